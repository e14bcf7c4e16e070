"""nkflow.tl."""
