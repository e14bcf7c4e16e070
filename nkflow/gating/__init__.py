"""nkflow.gating."""
