"""Shared neural-network blocks (DESIGN §2): timestep embeddings, FiLM, GD-Attn, AdaLN-Zero,
SwiGLU, typed joint attention."""

from scpert.nn.adaln import AdaLNZero
from scpert.nn.embeddings import TimestepEmbedder, sinusoidal_embedding
from scpert.nn.film import FiLM
from scpert.nn.gd_attn import GDAttnBlock
from scpert.nn.swiglu import SwiGLU
from scpert.nn.typed_attention import TypedJointAttention

__all__ = [
    "AdaLNZero",
    "FiLM",
    "GDAttnBlock",
    "SwiGLU",
    "TimestepEmbedder",
    "TypedJointAttention",
    "sinusoidal_embedding",
]
