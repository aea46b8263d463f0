"""Shared neural-network blocks (docs/architecture.md): timestep embeddings, FiLM, GD-Attn,
AdaLN-Zero, differential attention, SwiGLU, typed joint attention."""

from scpert.nn.adaln import AdaLNZero, AdaLNZeroNorm, modulate
from scpert.nn.diff_attn import DifferentialAttention, differential_attention
from scpert.nn.embeddings import TimestepEmbedder, sinusoidal_embedding
from scpert.nn.film import FiLM
from scpert.nn.gd_attn import GDAttnBlock
from scpert.nn.swiglu import SwiGLU
from scpert.nn.typed_attention import TypedJointAttention

__all__ = [
    "AdaLNZero",
    "AdaLNZeroNorm",
    "DifferentialAttention",
    "FiLM",
    "GDAttnBlock",
    "SwiGLU",
    "TimestepEmbedder",
    "TypedJointAttention",
    "differential_attention",
    "modulate",
    "sinusoidal_embedding",
]
