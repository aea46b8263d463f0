"""Shared neural-network blocks (DESIGN §2): timestep embeddings, FiLM, GD-Attn, AdaLN-Zero."""

from scpert.nn.adaln import AdaLNZero, modulate
from scpert.nn.embeddings import TimestepEmbedder, sinusoidal_embedding
from scpert.nn.film import FiLM
from scpert.nn.gd_attn import GDAttnBlock

__all__ = [
    "AdaLNZero",
    "FiLM",
    "GDAttnBlock",
    "TimestepEmbedder",
    "modulate",
    "sinusoidal_embedding",
]
