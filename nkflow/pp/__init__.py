"""nkflow.pp."""
