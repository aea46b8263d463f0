"""SCimilarity-compatible latent space: architecture, checkpoint layout, gene alignment,
fine-tuning on a split's training cells (the split-level prior ``latent``, docs/architecture.md
"Priors")."""

from scpert.latent.align import align_to_genes, lognorm, scimilarity_input
from scpert.latent.checkpoint import (
    CheckpointError,
    adapt_to_genes,
    architecture,
    load_frozen_prior,
    load_model,
    read_gene_order,
    save_model,
)
from scpert.latent.finetune import PRESETS, finetune, resolve_params
from scpert.latent.model import Decoder, Encoder, LatentModel

__all__ = [
    "PRESETS",
    "CheckpointError",
    "Decoder",
    "Encoder",
    "LatentModel",
    "adapt_to_genes",
    "align_to_genes",
    "architecture",
    "finetune",
    "load_frozen_prior",
    "load_model",
    "lognorm",
    "read_gene_order",
    "resolve_params",
    "save_model",
    "scimilarity_input",
]
