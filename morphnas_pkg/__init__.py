"""morphnas: neural architecture search by function-preserving network morphism."""

__version__ = "0.1.0"
