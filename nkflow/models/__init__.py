"""nkflow.models."""
