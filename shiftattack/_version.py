"""The package version (one place; ``shiftattack.__version__`` re-exports it)."""

__version__ = "0.1.0"
