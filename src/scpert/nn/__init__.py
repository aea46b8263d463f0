"""Shared neural-network blocks (DESIGN §2): timestep embeddings, FiLM, GD-Attn."""

from scpert.nn.embeddings import TimestepEmbedder, sinusoidal_embedding
from scpert.nn.film import FiLM
from scpert.nn.gd_attn import GDAttnBlock

__all__ = ["FiLM", "GDAttnBlock", "TimestepEmbedder", "sinusoidal_embedding"]
