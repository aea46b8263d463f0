"""Perturbation types and their features (scpert.perturbations), the log-normalised input form
(scpert.data.input_forms) and the checks of rule preprocess on the perturbation table."""

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from scpert import perturbations as pt
from scpert.chem import morgan_fingerprints
from scpert.data import input_forms
from scpert.data.schema import SchemaError
from scpert.methods import PerturbData, get_method
from scpert.steps.data import check_perturbations

from .test_baselines import SMILES, conditions, make_controls, make_train

GENES = [f"g{i}" for i in range(6)]


def table(rows, source="tests/drugs.tsv"):
    """rows: (drug, type, smiles, targets)."""
    out = pd.DataFrame(rows, columns=["drug", "type", "smiles", "targets"]).assign(moa="")
    out = out.set_index("drug", drop=False)
    out.attrs["source"] = source
    return out


def test_types_default_to_chemical_and_bad_types_are_named():
    old = table([("a", "", "C", "")]).drop(columns="type")
    assert pt.types_of(old).tolist() == ["chemical"]
    with pytest.raises(SchemaError, match="field 'type' of drug 'a' is 'drug'"):
        pt.types_of(table([("a", "drug", "C", "")]))


def test_chemical_rows_are_morgan_bits():
    drugs = table([("Belinostat", "chemical", SMILES["Belinostat"], "")])
    got = pt.perturbation_features(drugs, ["Belinostat"], seen=[], n_bits=64)
    want = morgan_fingerprints({"Belinostat": SMILES["Belinostat"]}, n_bits=64)
    np.testing.assert_array_equal(got.to_numpy(), want.to_numpy().astype(np.float32))


def test_identity_codes_are_fixed_unit_vectors_of_seen_proteins():
    drugs = table([("IFNG", "protein", "", ""), ("IL2", "protein", "", "")])
    got = pt.perturbation_features(drugs, ["IFNG", "IL2"], seen=["IFNG", "IL2"], n_bits=16)
    ifng = got.loc["IFNG"].to_numpy()
    np.testing.assert_allclose(np.linalg.norm(ifng[:8]), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(ifng[8:], 0.0)  # no gene part for a protein
    np.testing.assert_allclose(ifng[:8], pt.identity_code("IFNG", 8), rtol=1e-6)
    assert abs(ifng[:8] @ got.loc["IL2"].to_numpy()[:8]) < 0.99  # distinct codes


def test_an_unseen_protein_has_no_features_and_a_clear_error():
    drugs = table([("IFNG", "protein", "", ""), ("IL2", "protein", "", "")])
    got = pt.perturbation_features(drugs, ["IFNG", "IL2"], seen=["IFNG"], n_bits=16)
    assert list(got.index) == ["IFNG"] and set(got.attrs["unpredictable"]) == {"IL2"}
    tab = pt.DrugTable(list(got.index), got.to_numpy(), ["IFNG"], got.attrs["unpredictable"])
    with pytest.raises(
        SchemaError,
        match="cannot predict perturbation 'IL2' unseen in training: a protein perturbation is "
        "known by its identity",
    ):
        tab.row("IL2")


def test_gene_profiles_are_pca_loadings_of_the_controls():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 5)) @ rng.normal(size=(5, 5))
    controls = ad.AnnData(X.astype(np.float32), var=pd.DataFrame(index=list("ABCDE")))
    got = pt.gene_profiles(controls, width=3)
    Z = (X - X.mean(0)) / X.std(0)
    # loadings V_k * s_k of a gene: its covariance with each principal component score U_k s_k
    u, s, vt = np.linalg.svd(Z, full_matrices=False)
    want = (vt[:3] * s[:3, None]).T
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    np.testing.assert_allclose(np.abs(got.to_numpy()), np.abs(want), atol=1e-5)


def test_an_unseen_gene_has_its_profile_and_one_outside_the_gene_space_has_none():
    rng = np.random.default_rng(1)
    controls = ad.AnnData(
        rng.normal(size=(30, 4)).astype(np.float32), var=pd.DataFrame(index=list("ABCD"))
    )
    drugs = table([("A", "genetic", "", ""), ("B", "genetic", "", "B"), ("Z", "genetic", "", "")])
    got = pt.perturbation_features(drugs, ["A", "B", "Z"], seen=["A"], n_bits=8, controls=controls)
    profiles = pt.gene_profiles(controls, 4)
    np.testing.assert_allclose(got.loc["B"].to_numpy()[4:], profiles.loc["B"], rtol=1e-6)
    np.testing.assert_array_equal(got.loc["B"].to_numpy()[:4], 0.0)  # unseen: no identity
    np.testing.assert_allclose(got.loc["A"].to_numpy()[:4], pt.identity_code("A", 4), rtol=1e-6)
    assert "not in the method's gene space" in got.attrs["unpredictable"]["Z"]


def test_base_reg_on_cytokines_predicts_seen_ones_and_refuses_an_unseen_one():
    rng = np.random.default_rng(3)
    controls = make_controls(rng, {"D1": 10, "D2": 10, "D3": 10}, len(GENES), zero_gene=False)
    effect = {"IFNG": np.eye(len(GENES))[0], "IL2": np.eye(len(GENES))[1]}
    cells = make_train(
        controls[controls.obs["cell_line"] != "D3"],
        {(d, c, "1"): effect[c] for d in ("D1", "D2") for c in ("IFNG", "IL2")},
    )
    drugs = table([(c, "protein", "", "") for c in ("IFNG", "IL2", "TNF")])
    reg = get_method("base_reg").from_preset("tiny", {"alpha": 0.01}, seed=0)
    reg.fit(PerturbData(cells, drugs))
    got = reg.predict_deltas(controls, conditions(("D3", "IFNG", "1"), ("D3", "IL2", "1")))
    assert got.loc["D3|IFNG|1"].to_numpy().argmax() == 0
    assert got.loc["D3|IL2|1"].to_numpy().argmax() == 1
    with pytest.raises(SchemaError, match="cannot predict perturbation 'TNF' unseen in training"):
        reg.predict_deltas(controls, conditions(("D3", "TNF", "1")))


def test_preprocess_checks_types_and_structures():
    proteins = table([("IFNG", "protein", "", "")])
    check_perturbations(proteins, "d.tsv", "protein", "datasets.pbmc")  # no SMILES needed
    with pytest.raises(SchemaError, match="d.tsv: field 'smiles' of drug 'x' is missing"):
        check_perturbations(table([("x", "chemical", "", "")]), "d.tsv", None, "datasets.a")
    with pytest.raises(
        SchemaError,
        match="field 'type' of drug 'IFNG' is 'protein', but datasets.a.perturbation_type is "
        "'genetic'",
    ):
        check_perturbations(proteins, "d.tsv", "genetic", "datasets.a")
    with pytest.raises(SchemaError, match="column 'type' is missing, but datasets.a"):
        check_perturbations(proteins.drop(columns="type"), "d.tsv", "protein", "datasets.a")


def lognorm(counts: np.ndarray, target: float = 1e4) -> sp.csr_matrix:
    totals = counts.sum(1, keepdims=True)
    return sp.csr_matrix(np.log1p(counts / totals * target).astype(np.float32))


def test_counts_are_recovered_from_a_lognormalised_matrix():
    counts = np.array([[1, 0, 3, 7], [2, 5, 0, 1], [0, 0, 4, 9]], dtype=np.float64)
    got = input_forms.counts_from_lognorm(lognorm(counts, 1e6), "x.h5ad").toarray()
    # rows 0 and 1 have a gene seen once; row 2's smallest count is 4 (then 9 = 2.25 x 4)
    np.testing.assert_array_equal(got, counts)
    doubled = input_forms.counts_from_lognorm(lognorm(2 * counts), "x.h5ad").toarray()
    np.testing.assert_array_equal(doubled, counts)  # exact up to the counts' common divisor
    assert input_forms.looks_lognormalised(lognorm(counts))
    assert not input_forms.looks_lognormalised(sp.csr_matrix(counts * 0.37))


def test_a_scaled_matrix_is_refused_as_lognorm():
    # scaled data (a log-normalised matrix divided by each gene's spread) are no count vector
    z = sp.csr_matrix(np.abs(np.random.default_rng(0).normal(size=(2, 20))))
    with pytest.raises(SchemaError, match=r"x.h5ad: X \(declared input: lognorm\) is not log1p"):
        input_forms.counts_from_lognorm(z, "x.h5ad")
    with pytest.raises(SchemaError, match="datasets.<name>.input: lognorm"):
        raise SchemaError(input_forms.not_counts_message(lognorm(np.eye(3) + 1), "x.h5ad"))
