"""nkflow.report."""
