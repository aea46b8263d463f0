"""Small files in the published formats of the paper datasets, written by the tests themselves:
Tahoe-100M parquet shards and metadata, scPerturBench / GEARS / pertpy h5ads with their obs
columns, 10x CITE-seq matrices with ADT features, and L1000 level-5 GCTX with its side tables."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import scipy.io
import scipy.sparse as sp

from scpert.data.sources import tahoe

TAHOE_LINES = {"CVCL_0023": "A549", "CVCL_0480": "HepG2", "CVCL_0546": "MCF7"}
#: sample -> (drug, drugname_drugconc text)
TAHOE_SAMPLES = {
    "smp_1": ("DMSO_TF", "[('DMSO_TF', 0.0, 'uM')]"),
    "smp_2": ("Dabrafenib", "[('Dabrafenib', 0.05, 'uM')]"),
    "smp_3": ("Dabrafenib", "[('Dabrafenib', 500.0, 'nM')]"),
    "smp_4": ("Trametinib", "[('Trametinib', 5.0, 'uM')]"),
    "smp_5": ("DMSO_TF", "[('DMSO_TF', 0.0, 'uM')]"),
}
TAHOE_PLATES = {
    "smp_1": "plate1",
    "smp_2": "plate1",
    "smp_3": "plate1",
    "smp_4": "plate2",
    "smp_5": "plate2",
}
TAHOE_DRUGS = {
    "Dabrafenib": (
        "CC(C)(C)c1nc(c(s1)-c1ccnc(N)n1)-c1cccc(NS(=O)(=O)c2c(F)cccc2F)c1F",
        "Raf inhibitor",
        ["BRAF", "RAF1"],
    ),
    "Trametinib": (
        "CC1=C2C(=C(N(C1=O)C)NC3=C(C=C(C=C3)I)F)C(=O)N(C(=O)N2C4=CC=CC(=C4)NC(=O)C)C5CC5",
        "MEK inhibitor",
        ["MAP2K1"],
    ),
}


def tahoe_genes(n_genes: int) -> pd.DataFrame:
    """gene_metadata: token ids are not column positions (they start at 3 and skip some)."""
    tokens = 3 + 2 * np.arange(n_genes)
    symbols = ["MT-CO1", "MT-ND1"] + [f"GENE{i}" for i in range(2, n_genes)]
    return pd.DataFrame(
        {
            "gene_symbol": symbols,
            "ensembl_id": [f"ENSG{i:011d}" for i in range(n_genes)],
            "token_id": tokens,
        }
    )


def write_tahoe(
    folder: Path, *, n_genes: int = 40, cells_per_group: int = 12, n_shards: int = 2, seed: int = 0
):
    """Tahoe-like shards (cells sorted by sample, as released) and the four metadata tables.

    Returns (shard paths, dense counts of all cells in shard order, obs of all cells)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    genes = tahoe_genes(n_genes)
    genes.to_parquet(folder / "gene_metadata.parquet")
    pd.DataFrame(
        {
            "sample": list(TAHOE_SAMPLES),
            "drug": [d for d, _ in TAHOE_SAMPLES.values()],
            "drugname_drugconc": [t for _, t in TAHOE_SAMPLES.values()],
        }
    ).to_parquet(folder / "sample_metadata.parquet")
    pd.DataFrame(
        {
            "drug": list(TAHOE_DRUGS),
            "canonical_smiles": [v[0] for v in TAHOE_DRUGS.values()],
            "moa-fine": [v[1] for v in TAHOE_DRUGS.values()],
            "targets": [v[2] for v in TAHOE_DRUGS.values()],
        }
    ).to_parquet(folder / "drug_metadata.parquet")
    pd.DataFrame(
        {"Cell_ID_Cellosaur": list(TAHOE_LINES), "cell_name": list(TAHOE_LINES.values())}
    ).to_parquet(folder / "cell_line_metadata.parquet")
    rows = []
    for sample, (drug, _) in TAHOE_SAMPLES.items():
        for line in TAHOE_LINES:
            for i in range(cells_per_group):
                rows.append(
                    {
                        "drug": drug,
                        "sample": sample,
                        "cell_line_id": line,
                        "plate": TAHOE_PLATES[sample],
                        "BARCODE_SUB_LIB_ID": f"{sample}_{line}_{i:03d}-lib_1",
                    }
                )
    obs = pd.DataFrame(rows)
    base = rng.gamma(1.5, 1.5, n_genes)
    effect = np.zeros((len(obs), n_genes))
    effect[(obs["drug"] == "Dabrafenib").to_numpy(), 5:9] = 1.2
    effect[(obs["drug"] == "Trametinib").to_numpy(), 10:14] = -1.0
    mu = base * np.exp(effect) * rng.lognormal(0, 0.3, (len(obs), 1))
    counts = rng.negative_binomial(2, 2 / (2 + mu)).astype(np.float32)
    counts[0, :] = 0  # a cell with no genes detected (fails any min_genes)
    counts[0, 3] = 1
    paths = []
    for i, idx in enumerate(np.array_split(np.arange(len(obs)), n_shards)):
        path = folder / f"train-{i:05d}-of-{n_shards:05d}.parquet"
        tahoe.write_shard(
            path,
            sp.csr_matrix(counts[idx]),
            obs.iloc[idx],
            genes["token_id"].to_numpy(),
            row_group_rows=25,
        )
        paths.append(path)
    return paths, counts, obs


def log_normalise(counts: np.ndarray) -> np.ndarray:
    return np.log1p(counts / np.maximum(counts.sum(1, keepdims=True), 1) * 1e4)


def write_scperturbench_chemical(path: Path, seed: int = 0) -> ad.AnnData:
    """sciplex3-like scPerturBench h5ad: cov_drug_dose_name, condition, dose, SMILES, counts layer."""
    rng = np.random.default_rng(seed)
    rows = []
    for cell in ("A549", "K562"):
        rows += [(cell, "control", "1.0", "") for _ in range(10)]
        for drug, smi in (("Dex", "C[C@@H]1C"), ("Panobinostat", "ONC(=O)C=C")):
            for dose in ("0.1", "1.0"):
                rows += [(cell, drug, dose, smi) for _ in range(6)]
        rows += [(cell, "Dex+Panobinostat", "0.1+1.0", "C[C@@H]1C..ONC(=O)C=C") for _ in range(6)]
    obs = pd.DataFrame(rows, columns=["cell_type", "condition", "dose", "SMILES"])
    obs["cov_drug_dose_name"] = obs["cell_type"] + "_" + obs["condition"] + "_" + obs["dose"]
    obs["perturbation"] = obs["condition"]
    obs.index = [f"cell{i}" for i in range(len(obs))]
    counts = rng.poisson(2.0, (len(obs), 30)).astype(np.float32)
    adata = ad.AnnData(
        X=sp.csr_matrix(log_normalise(counts).astype(np.float32)),
        obs=obs,
        var=pd.DataFrame(index=[f"G{i}" for i in range(30)]),
    )
    adata.layers["counts"] = sp.csr_matrix(counts)
    adata.write_h5ad(path)
    return adata


def write_scperturbench_cellular(path: Path, seed: int = 0) -> ad.AnnData:
    """Kang-like scPerturBench h5ad: condition1 (cell type) / condition2 (control / stimulated)."""
    rng = np.random.default_rng(seed)
    rows = [
        (ct, p) for ct in ("CD4T", "B", "NK") for p in ("control", "stimulated") for _ in range(8)
    ]
    obs = pd.DataFrame(
        rows, columns=["condition1", "condition2"], index=[f"k{i}" for i in range(len(rows))]
    )
    counts = rng.poisson(3.0, (len(obs), 25)).astype(np.float32)
    adata = ad.AnnData(
        X=sp.csr_matrix(log_normalise(counts).astype(np.float32)),
        obs=obs,
        var=pd.DataFrame(index=[f"G{i}" for i in range(25)]),
    )
    adata.layers["counts"] = sp.csr_matrix(counts)
    adata.write_h5ad(path)
    return adata


def write_gears(path: Path, seed: int = 0) -> ad.AnnData:
    """GEARS perturb_processed.h5ad (Norman-like): condition ctrl / A+ctrl / ctrl+B / A+B,
    cell_type, var gene_name beside Ensembl ids, log-normalised X and a counts layer."""
    rng = np.random.default_rng(seed)
    symbols = ["CBL", "CNN1", "FOXA1", "KLF1", "SET"] + [f"G{i}" for i in range(25)]
    conditions = (
        ["ctrl"] * 20 + ["CBL+ctrl"] * 8 + ["ctrl+KLF1"] * 8 + ["CBL+KLF1"] * 8 + ["FOXA1+ctrl"] * 8
    )
    obs = pd.DataFrame(
        {
            "condition": conditions,
            "cell_type": "K562",
            "dose_val": ["1+1"] * len(conditions),
            "control": [int(c == "ctrl") for c in conditions],
        }
    )
    obs["condition_name"] = "K562_" + obs["condition"] + "_1+1"
    obs.index = [f"n{i}" for i in range(len(obs))]
    counts = rng.poisson(2.5, (len(obs), len(symbols))).astype(np.float32)
    var = pd.DataFrame({"gene_name": symbols}, index=[f"ENSG{i:011d}" for i in range(len(symbols))])
    adata = ad.AnnData(X=sp.csr_matrix(log_normalise(counts).astype(np.float32)), obs=obs, var=var)
    adata.layers["counts"] = sp.csr_matrix(counts)
    adata.write_h5ad(path)
    return adata


def write_pertpy_sciplex(path: Path, seed: int = 0) -> ad.AnnData:
    """scPerturb-harmonised h5ad (pertpy srivatsan_2020_sciplex3): perturbation, dose_value in
    nM with dose_unit, cell_line, replicate; raw counts in X; a few unannotated cells."""
    rng = np.random.default_rng(seed)
    rows = []
    for line in ("A549", "MCF7"):
        rows += [(line, "control", 0.0, "nM", "rep1") for _ in range(8)]
        for drug in ("Belinostat", "Dacinostat"):
            for dose in (10.0, 1000.0):
                rows += [
                    (line, drug, dose, "nM", "rep1" if dose < 100 else "rep2") for _ in range(6)
                ]
    rows += [(None, None, None, None, "rep1")] * 3
    obs = pd.DataFrame(
        rows, columns=["cell_line", "perturbation", "dose_value", "dose_unit", "replicate"]
    )
    obs.index = [f"s{i}" for i in range(len(obs))]
    counts = rng.poisson(2.0, (len(obs), 20)).astype(np.float32)
    adata = ad.AnnData(
        X=sp.csr_matrix(counts), obs=obs, var=pd.DataFrame(index=[f"G{i}" for i in range(20)])
    )
    adata.write_h5ad(path)
    return adata


def write_pertpy_kang(path: Path, seed: int = 0) -> ad.AnnData:
    """pertpy kang_2018: label ctrl / stim (IFN-beta), cell_type, replicate; raw counts in X."""
    rng = np.random.default_rng(seed)
    rows = [
        (ct, lab, rep)
        for ct in ("CD14 Mono", "B cells")
        for lab in ("ctrl", "stim")
        for rep in ("patient_101", "patient_1015")
        for _ in range(5)
    ]
    obs = pd.DataFrame(
        rows,
        columns=["cell_type", "label", "replicate"],
        index=[f"kang{i}" for i in range(len(rows))],
    )
    counts = rng.poisson(2.0, (len(obs), 20)).astype(np.float32)
    adata = ad.AnnData(
        X=sp.csr_matrix(counts), obs=obs, var=pd.DataFrame(index=[f"G{i}" for i in range(20)])
    )
    adata.write_h5ad(path)
    return adata


def chemcpa_smiles_csv(path: Path) -> None:
    """chemCPA's trapnell_drugs_smiles.csv layout: name,smiles,pathway without a header."""
    path.write_text(
        "Belinostat,ONC(=O)C=Cc1cccc(c1)S(=O)(=O)Nc1ccccc1,Epigenetic\nDacinostat,OCCN(CCc1c[nH]c2ccccc12)Cc1ccc(C=CC(=O)NO)cc1,Epigenetic\n"
    )


def _gz(text: bytes) -> bytes:
    return gzip.compress(text)


def write_citeseq_tar(path: Path, seed: int = 0, samples=("GSM1_M0_", "GSM2_M3_")) -> dict:
    """GEO-style RAW.tar of 10x feature-barcode matrices (Gene Expression + Antibody Capture)."""
    rng = np.random.default_rng(seed)
    genes = [f"G{i}" for i in range(12)]
    adts = ["CD3", "CD19", "CD14"]
    features = [(f"ENSG{i}", g, "Gene Expression") for i, g in enumerate(genes)] + [
        (a, a, "Antibody Capture") for a in adts
    ]
    truth = {}
    with tarfile.open(path, "w") as tar:
        for s, prefix in enumerate(samples):
            n = 7 + s
            matrix = rng.poisson(2.0, (len(features), n)).astype(np.int64)
            barcodes = [f"AAAC{s}{i:03d}-1" for i in range(n)]
            buf = io.BytesIO()
            scipy.io.mmwrite(buf, sp.coo_matrix(matrix))
            files = {
                f"{prefix}matrix.mtx.gz": _gz(buf.getvalue()),
                f"{prefix}features.tsv.gz": _gz(
                    "".join("\t".join(f) + "\n" for f in features).encode()
                ),
                f"{prefix}barcodes.tsv.gz": _gz("".join(b + "\n" for b in barcodes).encode()),
            }
            for name, data in files.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            truth[prefix] = (matrix, barcodes)
    return {"genes": genes, "adts": adts, "truth": truth}


def write_10x_h5(path: Path, seed: int = 0) -> tuple[np.ndarray, list[str], list[str]]:
    """A 10x HDF5 feature-barcode matrix (group ``matrix``) with ADT features."""
    rng = np.random.default_rng(seed)
    names = ["G0", "G1", "G2", "CD4", "CD8"]
    types = ["Gene Expression"] * 3 + ["Antibody Capture"] * 2
    matrix = rng.poisson(3.0, (len(names), 6)).astype(np.int64)
    csc = sp.csc_matrix(matrix)
    with h5py.File(path, "w") as f:
        g = f.create_group("matrix")
        g["data"], g["indices"], g["indptr"] = csc.data, csc.indices, csc.indptr
        g["shape"] = np.array(matrix.shape)
        g["barcodes"] = np.array([f"BC{i}" for i in range(6)], dtype="S")
        g["features/id"] = np.array(names, dtype="S")
        g["features/name"] = np.array(names, dtype="S")
        g["features/feature_type"] = np.array(types, dtype="S")
    return matrix, names, types


def write_level5(folder: Path, seed: int = 0) -> dict:
    """A GSE92742-like level-5 GCTX (metadata: ids only) with gene_info and sig_info tables."""
    rng = np.random.default_rng(seed)
    n_genes, n_sigs = 12, 9
    gene_ids = [str(1000 + i) for i in range(n_genes)]
    sig_ids = [f"CPC001_A375_24H:BRD-K{i:05d}:10" for i in range(n_sigs)]
    data = rng.normal(0, 1, (n_sigs, n_genes)).astype(np.float32)  # (columns, rows) as cmapPy
    path = folder / "level5.gctx"
    with h5py.File(path, "w") as f:
        f["/0/DATA/0/matrix"] = data
        f["/0/META/ROW/id"] = np.array(gene_ids, dtype="S")
        f["/0/META/COL/id"] = np.array(sig_ids, dtype="S")
    gene_info = pd.DataFrame(
        {
            "pr_gene_id": gene_ids,
            "pr_gene_symbol": [f"SYM{i}" for i in range(n_genes)],
            "pr_is_lmark": ["1" if i % 3 == 0 else "0" for i in range(n_genes)],
        }
    )
    sig_info = pd.DataFrame(
        {
            "sig_id": sig_ids,
            "pert_id": [f"BRD-K{i:05d}" for i in range(n_sigs)],
            "pert_iname": [f"drug{i % 4}" for i in range(n_sigs)],
            "pert_type": ["ctl_vehicle" if i in (0, 5) else "trt_cp" for i in range(n_sigs)],
            "cell_id": "A375",
            "pert_dose": [10.0] * n_sigs,
        }
    )
    gene_info.to_csv(folder / "gene_info.txt", sep="\t", index=False)
    with gzip.open(folder / "sig_info.txt.gz", "wt") as handle:
        sig_info.to_csv(handle, sep="\t", index=False)
    return {
        "path": path,
        "data": data,
        "gene_ids": gene_ids,
        "sig_ids": sig_ids,
        "gene_info": gene_info,
        "sig_info": sig_info,
    }
