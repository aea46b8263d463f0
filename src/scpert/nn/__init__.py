"""Shared neural-network blocks (DESIGN §2): timestep embeddings, FiLM, GD-Attn, differential
attention."""

from scpert.nn.diff_attn import DifferentialAttention, differential_attention
from scpert.nn.embeddings import TimestepEmbedder, sinusoidal_embedding
from scpert.nn.film import FiLM
from scpert.nn.gd_attn import GDAttnBlock

__all__ = [
    "DifferentialAttention",
    "FiLM",
    "GDAttnBlock",
    "TimestepEmbedder",
    "differential_attention",
    "sinusoidal_embedding",
]
