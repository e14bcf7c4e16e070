"""nkflow.io."""
