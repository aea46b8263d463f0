"""Preprocessing, schema validation errors and train-only HVG selection."""

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import scipy.sparse as sp

from scpert.data import schema
from scpert.data.preprocess import preprocess_counts, select_hvg
from scpert.data.splits import condition_table, make_split


def test_normalise_log1p_and_counts_layer(raw_small):
    adata = preprocess_counts(raw_small, target_sum=1e4)
    assert adata.n_obs == raw_small.n_obs
    totals = np.expm1(adata.X.toarray()).sum(1)
    np.testing.assert_allclose(totals, 1e4, rtol=1e-4)
    np.testing.assert_array_equal(adata.layers["counts"].toarray(), raw_small.X.toarray())
    assert adata.obs.loc["c0", schema.CONDITION] == "L1|control|0"
    assert set(adata.obs[schema.DOSE].cat.categories) == {"0", "0.1", "1", "1+1"}
    assert adata.X.dtype == np.float32 and sp.issparse(adata.X)


def test_qc_drops_small_conditions(raw_small):
    raw = raw_small[
        ~(
            (raw_small.obs["drug"] == "dA")
            & (raw_small.obs["dose"] == "1")
            & (raw_small.obs["cell_line"] == "L1")
        )
        | (np.arange(raw_small.n_obs) % 12 < 3)
    ].copy()
    adata = preprocess_counts(raw, min_cells_per_condition=5)
    assert "L1|dA|1" not in set(adata.obs[schema.CONDITION])
    assert "L2|dA|1" in set(adata.obs[schema.CONDITION])


def test_missing_drug_field_is_named(raw_small):
    raw = raw_small.copy()
    del raw.obs["drug"]
    with pytest.raises(schema.SchemaError, match=r"counts\.h5ad: obs\['drug'\] is missing"):
        preprocess_counts(raw, source="counts.h5ad")


def test_nan_in_x_is_named(raw_small):
    raw = raw_small.copy()
    raw.X = raw.X.toarray()
    raw.X[3, 5] = np.nan
    with pytest.raises(schema.SchemaError, match=r"x\.h5ad: X has 1 NaN/inf values"):
        preprocess_counts(raw, source="x.h5ad")


def test_non_integer_counts_and_dose_mismatch(raw_small):
    raw = raw_small.copy()
    raw.X = raw.X * 0.5
    with pytest.raises(schema.SchemaError, match="raw integer counts"):
        schema.validate(raw, "r.h5ad", kind="raw")
    raw = raw_small.copy()
    raw.obs["dose"] = raw.obs["dose"].astype(str).replace({"1+1": "1"})
    with pytest.raises(schema.SchemaError, match=r"obs\['dose'\] does not match obs\['drug'\]"):
        schema.validate(raw, "r.h5ad", kind="raw")


def test_hvg_fitted_on_train_cells_only(raw_small):
    adata = preprocess_counts(raw_small)
    split = make_split(condition_table(adata.obs, "control"), "drug_ood", test_drugs=["dA"])
    # a gene that varies wildly only in held-out test cells must not be chosen
    test_cells = adata.obs["drug"].isin(["dA"]).to_numpy()
    counts = adata.layers["counts"].toarray()
    rng = np.random.default_rng(0)
    counts[:, 0] = 1
    counts[test_cells, 0] = rng.integers(0, 500, test_cells.sum())
    adata.layers["counts"] = sp.csr_matrix(counts)
    genes = select_hvg(adata, split, n_top_genes=10)
    assert "G0" not in set(genes["gene"])
    # identical to scanpy on the training cells (controls included, test cells excluded)
    train = adata[~test_cells & ~adata.obs["drug"].str.contains("dA").to_numpy()]
    ref = sc.pp.highly_variable_genes(
        ad.AnnData(train.layers["counts"], var=pd.DataFrame(index=train.var_names)),
        n_top_genes=10,
        flavor="seurat_v3",
        inplace=False,
    )
    assert set(genes["gene"]) == set(train.var_names[ref["highly_variable"].to_numpy()])
    assert list(genes["gene"]) == [g for g in adata.var_names if g in set(genes["gene"])]


def test_hvg_keeps_all_genes_when_asked_for_more(raw_small):
    adata = preprocess_counts(raw_small)
    split = make_split(condition_table(adata.obs, "control"), "combo_seen2")
    genes = select_hvg(adata, split, n_top_genes=5000)
    assert list(genes["gene"]) == list(adata.var_names)


def test_qc_that_removes_every_cell_names_the_setting(raw_small):
    with pytest.raises(schema.SchemaError) as err:
        preprocess_counts(raw_small, min_genes=1000, source="c.h5ad")
    n = raw_small.n_obs
    assert str(err.value) == (
        f"c.h5ad: QC removed every cell: preprocess.min_genes=1000 removed the last {n} of {n} "
        f"cells (of {n} cells x 40 genes, min_genes=1000 removed {n} cells and 0 genes)"
    )


def test_qc_that_removes_every_gene_lists_each_step(raw_small):
    detected = (raw_small.X.toarray() > 0).sum(axis=1)
    min_genes = int(np.sort(detected)[10])  # removes the 10 cells with the fewest genes
    n_removed = int((detected < min_genes).sum())
    with pytest.raises(schema.SchemaError) as err:
        preprocess_counts(raw_small, min_genes=min_genes, min_cells=10**6, source="c.h5ad")
    assert str(err.value) == (
        f"c.h5ad: QC removed every gene: preprocess.min_cells=1000000 removed the last 40 of 40 "
        f"genes (of {raw_small.n_obs} cells x 40 genes, min_genes={min_genes} removed "
        f"{n_removed} cells and 0 genes; min_cells=1000000 removed 0 cells and 40 genes)"
    )


def test_qc_that_removes_a_lines_controls(raw_small):
    """L2's control cells are made shallow (one detected gene) so that min_genes drops them."""
    raw = raw_small.copy()
    x = raw.X.toarray()
    shallow = ((raw.obs["cell_line"] == "L2") & (raw.obs["drug"] == "control")).to_numpy()
    x[shallow] = 0
    x[shallow, 0] = 5
    raw.X = sp.csr_matrix(x)
    with pytest.raises(schema.SchemaError) as err:
        preprocess_counts(raw, min_genes=2, source="c.h5ad")
    assert str(err.value) == (
        "c.h5ad: after QC, cell line 'L2' (obs['cell_line']) has no control cells "
        f"(obs['drug'] == 'control') (of {raw.n_obs} cells x 40 genes, min_genes=2 removed "
        f"{int(shallow.sum())} cells and 0 genes)"
    )


def test_qc_logs_what_each_step_removed(raw_small, caplog):
    detected_in = (raw_small.X.toarray() > 0).sum(axis=0)
    with caplog.at_level("INFO", logger="scpert.data.preprocess"):
        adata = preprocess_counts(raw_small, min_cells=500)
    removed = int((detected_in < 500).sum())
    assert removed == raw_small.n_vars - adata.n_vars == 5  # genes seen in 168 ... 475 cells
    assert "QC preprocess.min_cells=500 removed 0 cells and 5 genes" in caplog.text


@pytest.mark.parametrize("sparse", [True, False])
def test_seurat_v3_variances_equal_scanpys(raw_small, sparse):
    from scpert.data.preprocess import seurat_v3_variances

    counts = raw_small.X if sparse else raw_small.X.toarray()
    ref = sc.pp.highly_variable_genes(
        ad.AnnData(counts, var=pd.DataFrame(index=raw_small.var_names)),
        n_top_genes=10,
        flavor="seurat_v3",
        inplace=False,
    )
    ours = seurat_v3_variances(counts)
    assert np.isfinite(ours).all() and ours.std() > 0
    np.testing.assert_allclose(ours, ref["variances_norm"].to_numpy(), rtol=1e-9)
