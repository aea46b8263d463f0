"""Non-chemical datasets end to end (issue 16, acceptance): a PBMC-like cytokine set (protein
perturbations, STATE's Parse layout, no SMILES) and a Norman-like CRISPRa set (genetic, the GEARS
``perturb_processed.h5ad`` layout) run preprocess -> split -> baselines and scDFM at a reduced
tiny preset -> evaluate -> summary. The cytokine set is given twice, as raw counts and as a
log-normalised matrix (``input: lognorm``), which must give the same processed data, HVGs and
metrics."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import yaml

from .test_workflow import snakemake

pytestmark = pytest.mark.workflow

N_GENES = 60
CYTOKINES = ("IFNG", "IL2", "TNF")
DONORS = ("D1", "D2", "D3")


def _lognorm(counts: np.ndarray) -> np.ndarray:
    return np.log1p(counts / counts.sum(1, keepdims=True) * 1e4).astype(np.float32)


def write_pbmc(folder, seed: int = 0):
    """STATE Parse PBMC layout: obs donor, cytokine (PBS = control), plate; symbols in var;
    raw counts in X (``pbmc.h5ad``) and the same cells log-normalised (``pbmc_lognorm.h5ad``)."""
    rng = np.random.default_rng(seed)
    base = rng.gamma(2.0, 1.0, N_GENES)
    rows, rates = [], []
    for donor in DONORS:
        donor_rate = base * rng.lognormal(0, 0.2, N_GENES)
        for c, cytokine in enumerate(("PBS", *CYTOKINES)):
            effect = np.ones(N_GENES)
            if c:
                effect[10 * c : 10 * c + 8] = 4.0  # each cytokine induces its own genes
            for i in range(24):
                rows.append((donor, cytokine, f"plate{i % 2}"))
                rates.append(donor_rate * effect)
    counts = rng.poisson(np.array(rates) * 3).astype(np.float32)
    counts[:, 0] += 1  # every cell detects some gene once (as real PBMC cells do)
    obs = pd.DataFrame(rows, columns=["donor", "cytokine", "plate"])
    obs.index = [f"pbmc{i}" for i in range(len(obs))]
    var = pd.DataFrame(index=[f"GENE{i}" for i in range(N_GENES)])
    ad.AnnData(sp.csr_matrix(counts), obs=obs, var=var).write_h5ad(folder / "pbmc.h5ad")
    ad.AnnData(sp.csr_matrix(_lognorm(counts)), obs=obs, var=var).write_h5ad(
        folder / "pbmc_lognorm.h5ad"
    )


def write_norman(folder, seed: int = 1):
    """GEARS perturb_processed.h5ad (Norman-like): condition ``A+ctrl`` / ``A+B``, cell_type
    K562, gene symbols in var gene_name, log-normalised X and raw counts in layers["counts"]."""
    rng = np.random.default_rng(seed)
    symbols = ["CBL", "KLF1", "FOXA1", "SET", "CEBPA", "JUN"] + [f"G{i}" for i in range(54)]
    singles = symbols[:6]
    combos = ["CBL+KLF1", "FOXA1+SET", "CEBPA+JUN", "CBL+SET"]
    conditions = ["ctrl"] * 60 + [f"{g}+ctrl" for g in singles for _ in range(20)]
    conditions += [c for c in combos for _ in range(20)]
    base = rng.gamma(2.0, 1.0, len(symbols)) * 3
    rates = []
    for cond in conditions:
        rate = base.copy()
        for gene in cond.split("+"):
            if gene != "ctrl":
                j = symbols.index(gene)
                rate[j] *= 6.0  # CRISPRa raises its target
                rate[6 + 5 * j : 11 + 5 * j] *= 2.0  # and the target's downstream genes
        rates.append(rate)
    counts = rng.poisson(np.array(rates)).astype(np.float32)
    counts[:, -1] += 1
    obs = pd.DataFrame({"condition": conditions, "cell_type": "K562", "gemgroup": "1"})
    obs.index = [f"n{i}" for i in range(len(obs))]
    var = pd.DataFrame({"gene_name": symbols}, index=[f"ENSG{i:011d}" for i in range(len(symbols))])
    adata = ad.AnnData(sp.csr_matrix(_lognorm(counts)), obs=obs, var=var)
    adata.layers["counts"] = sp.csr_matrix(counts)
    adata.write_h5ad(folder / "perturb_processed.h5ad")


def pbmc_entry(path, split: str, **extra) -> dict:
    return {
        "source": "mapped",
        "perturbation_type": "protein",
        "load": {
            "files": {"h5ad": str(path)},
            "options": {
                "context": "donor",
                "perturbation": "cytokine",
                "controls": ["PBS"],
                "plate": "plate",
                "type": "protein",
            },
        },
        "splits": [split],
        "preprocess": {"min_cells_per_condition": 5},
        "hvg": {"n_top_genes": 40, "flavor": "seurat_v3"},
        **extra,
    }


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("types")
    write_pbmc(folder)
    write_norman(folder)
    config = {
        "seed": 0,
        "control_label": "control",
        "device": "cpu",
        "datasets": {
            "pbmc": pbmc_entry(folder / "pbmc.h5ad", "donors"),
            "pbmc_lognorm": pbmc_entry(folder / "pbmc_lognorm.h5ad", "donors_b", input="lognorm"),
            "norman": {
                "source": "gears",
                "perturbation_type": "genetic",
                "load": {"files": {"h5ad": str(folder / "perturb_processed.h5ad")}},
                "splits": ["combos"],
                "preprocess": {"min_cells_per_condition": 5},
                "hvg": {"n_top_genes": 40},
            },
        },
        "splits": {
            "donors": {"type": "cell_ood", "test_cell_lines": ["D3"]},
            "donors_b": {"type": "cell_ood", "test_cell_lines": ["D3"]},
            "combos": {"type": "combo_seen2", "seed": 0, "test_fraction": 0.5},
        },
        "methods": {
            # the log-normalised copy (split donors_b) runs the two baselines it is compared on
            "base_control": {"preset": "tiny", "splits": ["donors", "combos"]},
            "perturb_mean": {"preset": "tiny"},
            "context_mean": {"preset": "tiny", "splits": ["donors", "combos"]},
            "base_reg": {"preset": "tiny"},
            "additive": {"preset": "tiny", "splits": ["combos"]},
            "scdfm": {
                "preset": "tiny",
                "splits": ["donors", "combos"],
                "params": {"steps": 60, "sampler_steps": 2, "generated_cells": 3},
            },
        },
        "evaluation": {"protocols": ["scperturbench"], "max_cells": 200, "reference_rows": []},
    }
    work = folder / "work"
    work.mkdir()
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    snakemake(
        "results/tables/summary.tsv",
        "--cores",
        "2",
        "-d",
        work,
        "--configfile",
        work / "config.yaml",
    )
    return work


def test_perturbation_tables_carry_their_types(run):
    pbmc = pd.read_csv(run / "resources/raw/pbmc/drugs.tsv", sep="\t", keep_default_na=False)
    assert pbmc["drug"].tolist() == list(CYTOKINES) and set(pbmc["type"]) == {"protein"}
    assert (pbmc["smiles"] == "").all()
    norman = pd.read_csv(run / "resources/raw/norman/drugs.tsv", sep="\t", keep_default_na=False)
    assert (
        set(norman["type"]) == {"genetic"} and norman["targets"].tolist() == norman["drug"].tolist()
    )


def test_every_method_ran_on_both_types(run):
    summary = pd.read_csv(run / "results/tables/summary.tsv", sep="\t")
    got = set(zip(summary["dataset"], summary["method"]))
    for dataset in ("pbmc", "norman"):
        for method in ("base_control", "perturb_mean", "context_mean", "base_reg", "scdfm"):
            assert (dataset, method) in got, (dataset, method)
    assert ("norman", "additive") in got
    scdfm = pd.read_csv(run / "results/pbmc/donors/scdfm/metrics.tsv", sep="\t")
    assert np.isfinite(scdfm["value"]).all() and len(scdfm) > 0


def test_lognorm_input_gives_the_same_results_as_counts(run):
    a = ad.read_h5ad(run / "results/pbmc/processed.h5ad")
    b = ad.read_h5ad(run / "results/pbmc_lognorm/processed.h5ad")
    assert (a.obs_names == b.obs_names).all()
    np.testing.assert_array_equal(a.layers["counts"].toarray(), b.layers["counts"].toarray())
    np.testing.assert_allclose(a.X.toarray(), b.X.toarray(), rtol=1e-6, atol=1e-6)
    genes_a = pd.read_csv(run / "results/pbmc/donors/genes.tsv", sep="\t")
    genes_b = pd.read_csv(run / "results/pbmc_lognorm/donors_b/genes.tsv", sep="\t")
    assert genes_a["gene"].tolist() == genes_b["gene"].tolist()
    for method in ("perturb_mean", "base_reg"):
        ma = pd.read_csv(run / f"results/pbmc/donors/{method}/metrics.tsv", sep="\t")
        mb = pd.read_csv(run / f"results/pbmc_lognorm/donors_b/{method}/metrics.tsv", sep="\t")
        np.testing.assert_allclose(ma["value"], mb["value"], rtol=1e-5, atol=1e-6)
