"""The nkflow version: one line that hatch reads and that modules import without the package."""

__version__ = "0.1.0"
