"""SCimilarity's encoder/decoder architecture (Heimberg et al. 2023; Genentech/scimilarity
``nn_models.py``), reproduced so that published state dicts load unchanged.

Encoder (``network`` is a ModuleList, so state-dict keys read ``network.0.1.weight`` etc.):
``[Dropout(0.4) -> Linear(n_genes, h1) -> BatchNorm1d -> PReLU]``, then per further hidden layer
``[Dropout(0.5) -> Linear -> BatchNorm1d -> PReLU]``, then ``Linear(h_last, latent)``; the output is
L2-normalised, so embeddings lie on the unit sphere. Decoder: ``[Linear(latent, h_last) ->
BatchNorm1d -> PReLU]``, further ``[Dropout(0.5) -> Linear -> BatchNorm1d -> PReLU]`` through the
hidden sizes in reverse, then ``Linear(h1, n_genes)`` (no output activation: it reconstructs
log-normalised expression). SCimilarity's optional residual connections are not used by its
published models and are not reproduced.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn


class Encoder(nn.Module):
    def __init__(
        self,
        n_genes: int,
        latent_dim: int = 128,
        hidden_dim: Sequence[int] = (1024, 1024),
        dropout: float = 0.5,
        input_dropout: float = 0.4,
    ):
        super().__init__()
        sizes = [n_genes, *map(int, hidden_dim)]
        self.network = nn.ModuleList(
            nn.Sequential(
                nn.Dropout(p=input_dropout if i == 0 else dropout),
                nn.Linear(sizes[i], sizes[i + 1]),
                nn.BatchNorm1d(sizes[i + 1]),
                nn.PReLU(),
            )
            for i in range(len(sizes) - 1)
        )
        self.network.append(nn.Linear(sizes[-1], latent_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.network:
            x = layer(x)
        return F.normalize(x, p=2, dim=1)


class Decoder(nn.Module):
    def __init__(
        self,
        n_genes: int,
        latent_dim: int = 128,
        hidden_dim: Sequence[int] = (1024, 1024),
        dropout: float = 0.5,
    ):
        """hidden_dim: the ENCODER's hidden sizes; the decoder runs through them in reverse."""
        super().__init__()
        sizes = [latent_dim, *reversed([int(h) for h in hidden_dim])]
        blocks = []
        for i in range(len(sizes) - 1):
            layers = [] if i == 0 else [nn.Dropout(p=dropout)]
            layers += [nn.Linear(sizes[i], sizes[i + 1]), nn.BatchNorm1d(sizes[i + 1]), nn.PReLU()]
            blocks.append(nn.Sequential(*layers))
        self.network = nn.ModuleList(blocks)
        self.network.append(nn.Linear(sizes[-1], n_genes))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        for layer in self.network:
            z = layer(z)
        return z


class LatentModel(nn.Module):
    """An encoder/decoder pair over a named gene space (the split's genes, in order)."""

    def __init__(
        self,
        genes: Sequence[str],
        latent_dim: int = 128,
        hidden_dim: Sequence[int] = (1024, 1024),
        dropout: float = 0.5,
        input_dropout: float = 0.4,
    ):
        super().__init__()
        self.genes = [str(g) for g in genes]
        self.latent_dim = int(latent_dim)
        self.hidden_dim = [int(h) for h in hidden_dim]
        self.encoder = Encoder(len(self.genes), latent_dim, hidden_dim, dropout, input_dropout)
        self.decoder = Decoder(len(self.genes), latent_dim, hidden_dim, dropout)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encoder(x)
        return z, self.decoder(z)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @torch.no_grad()
    def embed(self, X, batch_size: int = 4096) -> np.ndarray:
        """Embeddings (n, latent_dim) float32 of log-normalised expression in :attr:`genes` order
        (dense or sparse rows); evaluation mode (no dropout, BatchNorm running statistics)."""
        return self._apply_rows(self.encoder, X, batch_size)

    @torch.no_grad()
    def reconstruct(self, Z, batch_size: int = 4096) -> np.ndarray:
        """Decoded expression (n, n_genes) float32 of latents ``Z`` (n, latent_dim)."""
        return self._apply_rows(self.decoder, Z, batch_size)

    def _apply_rows(self, net: nn.Module, X, batch_size: int) -> np.ndarray:
        was_training = net.training
        net.eval()
        parts = []
        for start in range(0, X.shape[0], batch_size):
            block = X[start : start + batch_size]
            block = block.toarray() if sp.issparse(block) else np.asarray(block)
            rows = torch.as_tensor(block, dtype=torch.float32, device=self.device)
            parts.append(net(rows).cpu().numpy())
        net.train(was_training)
        width = self.latent_dim if net is self.encoder else len(self.genes)
        return np.concatenate(parts) if parts else np.zeros((0, width), dtype=np.float32)
