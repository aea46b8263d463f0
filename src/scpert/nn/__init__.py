"""Shared neural-network blocks (docs/architecture.md): timestep embeddings, FiLM, GD-Attn,
AdaLN-Zero, differential attention."""

from scpert.nn.adaln import AdaLNZero, modulate
from scpert.nn.diff_attn import DifferentialAttention, differential_attention
from scpert.nn.embeddings import TimestepEmbedder, sinusoidal_embedding
from scpert.nn.film import FiLM
from scpert.nn.gd_attn import GDAttnBlock

__all__ = [
    "AdaLNZero",
    "DifferentialAttention",
    "FiLM",
    "GDAttnBlock",
    "TimestepEmbedder",
    "differential_attention",
    "modulate",
    "sinusoidal_embedding",
]
