"""Perturbation-prediction methods behind one protocol and one registry (DESIGN §2)."""

from scpert.methods.base import Method, PerturbData, available_methods, get_method, register

__all__ = ["Method", "PerturbData", "available_methods", "get_method", "register"]
