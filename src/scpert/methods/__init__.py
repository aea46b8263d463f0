"""Perturbation-prediction methods behind one protocol and one registry (DESIGN §2).

Importing this package is light (the registry and the method specs); ``Method`` and
``PerturbData`` (anndata) and each method's class (torch, RDKit) load on first use.
"""

from scpert.methods.registry import (
    MethodSpec,
    available_methods,
    get_method,
    get_spec,
    register,
    register_spec,
)

__all__ = [
    "Method",
    "MethodSpec",
    "PerturbData",
    "available_methods",
    "get_method",
    "get_spec",
    "register",
    "register_spec",
]


def __getattr__(name: str):
    if name in ("Method", "PerturbData"):
        from scpert.methods import base

        return getattr(base, name)
    raise AttributeError(f"module 'scpert.methods' has no attribute '{name}'")
