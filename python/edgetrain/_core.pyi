"""Type stub of the compiled core (rust/py), checked by ``mypy.stubtest`` in ``make test``."""

__all__ = ["__version__", "version"]

__version__: str

def version() -> str:
    """The version of the compiled core, equal to the Python package's version."""
