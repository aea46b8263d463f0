"""scpert: reproducible benchmark of single-cell drug-perturbation prediction models."""

__version__ = "0.1.0"
