"""``base_mlp``: the MLP baseline (scPerturBench ``chemical_baseMLP.py``), in its own module so
the other baselines never import torch.

Features and targets are those of ``base_reg`` (:class:`scpert.methods.baselines.FeatureBaseline`):
drug structure x dose + context PCs -> pseudobulk delta; Adam on MSE, optional early stopping on
held-out training conditions. Unlike scPerturBench's MLP (ReLU on the output) the output layer is
linear, because the target is a signed delta.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from scpert.methods.baselines.deltas import FeatureBaseline
from scpert.methods.registry import register


def build_mlp(
    n_in: int, hidden: Sequence[int], n_out: int, device: str | torch.device = "cpu"
) -> nn.Sequential:
    """Linear-ReLU blocks then a linear output layer."""
    sizes = [n_in, *map(int, hidden)]
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b, device=device), nn.ReLU()]
    layers.append(nn.Linear(sizes[-1], n_out, device=device))
    return nn.Sequential(*layers)


@register
class BaseMLP(FeatureBaseline):
    """MLP from drug structure x dose + context PCs to the pseudobulk delta (Adam, MSE)."""

    name = "base_mlp"
    STATE_DICT_FILE: ClassVar[str] = "mlp.pt"

    def _fit_model(self, X, Y, device):
        p = self.params
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            net = build_mlp(X.shape[1], p["hidden"], Y.shape[1])
        self.device = torch.device(device)
        self.net = net.to(self.device)
        X_t = torch.as_tensor(X, dtype=torch.float32, device=self.device)
        Y_t = torch.as_tensor(Y, dtype=torch.float32, device=self.device)
        generator = torch.Generator().manual_seed(self.seed)
        order = torch.randperm(len(X_t), generator=generator)
        n_val = int(round(len(X_t) * float(p["val_fraction"]))) if len(X_t) > 1 else 0
        val, fit_rows = order[:n_val], order[n_val:]
        optimizer = torch.optim.Adam(
            self.net.parameters(), lr=float(p["lr"]), weight_decay=float(p["weight_decay"])
        )
        loss_fn = nn.MSELoss()
        best, best_state, stale = np.inf, None, 0
        for _ in range(int(p["epochs"])):
            self.net.train()
            shuffled = fit_rows[torch.randperm(len(fit_rows), generator=generator)]
            for batch in torch.split(shuffled, int(p["batch_size"])):
                optimizer.zero_grad()
                loss_fn(self.net(X_t[batch]), Y_t[batch]).backward()
                optimizer.step()
            if n_val:  # early stopping on held-out training conditions (scPerturBench baseMLP)
                self.net.eval()
                with torch.no_grad():
                    val_loss = loss_fn(self.net(X_t[val]), Y_t[val]).item()
                if val_loss < best - float(p["min_delta"]):
                    best, best_state, stale = val_loss, copy.deepcopy(self.net.state_dict()), 0
                else:
                    stale += 1
                    if stale >= int(p["patience"]):
                        break
        if best_state is not None:
            self.net.load_state_dict(best_state)
        self.net.eval()

    def _deltas(self, conditions, control_means):
        X = torch.as_tensor(self.features.matrix(conditions, control_means), device=self.device)
        with torch.no_grad():
            return self.net(X).cpu().numpy().astype(np.float64)

    def parameter_counts(self) -> dict[str, int]:
        if hasattr(self, "net"):
            net = self.net
        else:
            n_features, n_genes = self._describe_sizes()
            net = build_mlp(n_features, self.params["hidden"], n_genes, device="meta")
        linear = [m for m in net if isinstance(m, nn.Linear)]
        groups = {"mlp.input": linear[:1], "mlp.hidden": linear[1:-1], "mlp.output": linear[-1:]}
        if len(linear) == 1:
            groups = {"mlp.output": linear}
        return {
            name: sum(p.numel() for m in mods for p in m.parameters() if p.requires_grad)
            for name, mods in groups.items()
            if mods
        }

    def _save_state(self, path: Path) -> None:
        super()._save_state(path)
        torch.save(self.net.state_dict(), path / self.STATE_DICT_FILE)

    def _load_state(self, path: Path, device: str) -> None:
        super()._load_state(path, device)
        self.device = torch.device(device)
        state = torch.load(path / self.STATE_DICT_FILE, map_location=self.device, weights_only=True)
        self.net = build_mlp(
            self.features.n_features, self.params["hidden"], len(self.genes), self.device
        )
        self.net.load_state_dict(state)
        self.net.eval()
