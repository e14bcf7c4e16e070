"""nkflow.pl."""
