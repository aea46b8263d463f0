"""Shared fixtures: small hand-built perturbation datasets following the data contract."""

from __future__ import annotations

import itertools
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from scpert.data import schema

REPO = Path(__file__).resolve().parents[1]
#: the project's shared/ folder sits beside the checkout (CI clones main with shared/ beside it)
SHARED_DATA = next(
    (p for p in (REPO.parent / "shared" / "data", Path("/work/shared/data")) if p.is_dir()),
    REPO.parent / "shared" / "data",
)

#: a small world for the prior tests (several L1000-only drugs, few cells)
PRIOR_WORLD = {
    "seed": 1,
    "n_genes": 300,
    "n_landmarks": 80,
    "n_programs": 10,
    "n_cell_lines": 2,
    "n_moas": 4,
    "drugs_per_moa": 3,
    "n_l1000_only_drugs": 8,
    "doses": [1.0, 10.0],
    "n_plates": 2,
    "cells_per_condition": 10,
    "control_cells_per_plate": 20,
    "n_combos": 2,
    "l1000_cell_lines": 3,
    "citeseq_cells": 100,
    "n_proteins": 10,
}


def make_raw(
    seed: int = 0,
    n_genes: int = 40,
    cells: int = 12,
    lines=("L1", "L2", "L3"),
    drugs=("dA", "dB", "dC", "dD", "dE", "dF"),
    doses=("0.1", "1"),
    combos=("dA+dB", "dA+dC", "dB+dD", "dC+dE", "dD+dF", "dE+dF"),
) -> ad.AnnData:
    """Raw NB counts with a per-drug shift on a few genes; controls on two plates."""
    rng = np.random.default_rng(seed)
    rows = []
    for line in lines:
        rows += [(line, "control", "0", f"p{i % 2}") for i in range(2 * cells)]
        for drug, dose in itertools.product(drugs, doses):
            rows += [(line, drug, dose, f"p{i % 2}") for i in range(cells)]
        for combo in combos:
            rows += [(line, combo, "1+1", f"p{i % 2}") for i in range(cells)]
    obs = pd.DataFrame(rows, columns=[schema.CELL_LINE, schema.DRUG, schema.DOSE, schema.PLATE])
    obs.index = [f"c{i}" for i in range(len(obs))]
    base = rng.gamma(2.0, 2.0, n_genes)
    effect = {d: np.zeros(n_genes) for d in drugs}
    for k, d in enumerate(drugs):
        effect[d][(3 * k) % n_genes : (3 * k) % n_genes + 3] = 1.5
    mu = np.empty((len(obs), n_genes))
    for i, (drug, dose) in enumerate(zip(obs[schema.DRUG], obs[schema.DOSE])):
        shift = np.zeros(n_genes)
        if drug != "control":
            for d, x in zip(schema.components(drug), schema.component_doses(dose)):
                shift += effect[d] * np.log1p(x) / np.log1p(1.0)
        mu[i] = base * np.exp(shift)
    counts = rng.negative_binomial(5, 5 / (5 + mu))
    var = pd.DataFrame(index=[f"G{i}" for i in range(n_genes)])
    return ad.AnnData(X=sp.csr_matrix(counts.astype(np.float32)), obs=obs, var=var)


@pytest.fixture
def raw_small() -> ad.AnnData:
    return make_raw()


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> Path:
    """A small simulated world (:data:`PRIOR_WORLD`), written once per test session."""
    from scpert.data.simulate import simulate_world

    out = tmp_path_factory.mktemp("prior_world")
    simulate_world(PRIOR_WORLD, out, REPO / "resources")
    return out
