"""The package version: one place, in the base layer, for the package and the files it writes."""

__version__ = "0.1.0"
