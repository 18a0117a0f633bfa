"""Type stub of the compiled core (rust/py)."""

__version__: str

def version() -> str:
    """The version of the compiled core, equal to the Python package's version."""
