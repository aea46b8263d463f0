"""The synthetic world (DESIGN §5): shape of the biology, sparsity control, formats, determinism."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
from rdkit import Chem, DataStructs
from rdkit.Chem import rdFingerprintGenerator

from scpert.data import io, schema
from scpert.data.simulate import (
    WORLD_FILES,
    hill_response,
    moa_mismatch_counts,
    modz,
    resolve_params,
    simulate_world,
)
from scpert.priors import l1000 as io_l1000

REPO = Path(__file__).resolve().parents[1]
RESOURCES = REPO / "resources"
SMALL = {
    "seed": 3,
    "n_genes": 300,
    "n_landmarks": 60,
    "n_programs": 8,
    "n_cell_lines": 2,
    "n_moas": 3,
    "drugs_per_moa": 3,
    "n_l1000_only_drugs": 4,
    "doses": [0.1, 1.0, 10.0],
    "n_plates": 2,
    "cells_per_condition": 30,
    "control_cells_per_plate": 40,
    "n_combos": 4,
    "l1000_cell_lines": 2,
    "citeseq_cells": 300,
    "n_proteins": 12,
}


def _digest(folder: Path) -> dict[str, str]:
    return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in WORLD_FILES}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("world")
    summary = simulate_world(SMALL, out, RESOURCES)
    return out, summary


@pytest.fixture(scope="module")
def truth(world):
    return ad.read_h5ad(world[0] / "ground_truth.h5ad")


@pytest.fixture(scope="module")
def counts(world):
    return ad.read_h5ad(world[0] / "counts.h5ad")


@pytest.fixture(scope="module")
def drugs(world):
    return io.read_drug_table(world[0] / "drugs.tsv")


def test_files_and_schema(world, counts):
    out, summary = world
    assert sorted(p.name for p in out.iterdir()) == sorted(WORLD_FILES)  # no temporary leftovers
    schema.validate(counts, out / "counts.h5ad", kind="raw")
    assert summary["n_cells"] == counts.n_obs and summary["n_genes"] == counts.n_vars == 300
    # 2 lines x (9 drugs x 3 doses x 30 + 4 combos x 30 + 2 plates x 40 controls)
    assert counts.n_obs == 2 * (9 * 3 * 30 + 4 * 30 + 2 * 40)
    assert set(counts.obs[schema.DOSE]) == {"0", "0.1", "1", "10", "1+1"}
    assert set(counts.obs.loc[counts.obs[schema.DRUG] == "control", schema.DOSE]) == {"0"}
    var = counts.var
    assert var["is_landmark"].sum() == 60 and var["protein_coding"].sum() == 180
    assert var.loc[var["is_landmark"], "protein_coding"].all()
    landmarks = set(
        pd.read_csv(RESOURCES / "genes/l1000_landmarks.tsv", sep="\t")["pr_gene_symbol"]
    )
    assert set(var.index[var["is_landmark"]]) <= landmarks
    assert not set(var.index[~var["is_landmark"]]) & landmarks
    assert var["program"].min() == -1 and set(var["program"]) == set(range(-1, 8))
    lines = pd.read_csv(out / "cell_lines.tsv", sep="\t")
    assert set(counts.obs[schema.CELL_LINE]) == set(lines.loc[lines["in_single_cell"], "cell_line"])


def test_every_condition_on_every_plate(counts):
    per = counts.obs.groupby([schema.CELL_LINE, schema.DRUG, schema.DOSE], observed=True)[
        schema.PLATE
    ]
    assert (per.nunique() == 2).all()


def test_zero_fraction_hits_target(tmp_path):
    for target in (0.6, 0.85):
        params = {**SMALL, "zero_fraction": target, "citeseq_cells": 50}
        summary = simulate_world(params, tmp_path / str(target), RESOURCES)
        assert abs(summary["zero_fraction"] - target) < 0.05
        X = ad.read_h5ad(tmp_path / str(target) / "counts.h5ad").X
        assert summary["zero_fraction"] == pytest.approx(1 - X.nnz / np.prod(X.shape))


def test_deterministic_given_seed(world, tmp_path):
    time.sleep(1.1)  # HDF5 timestamps have one-second resolution: a stored time would differ
    simulate_world(SMALL, tmp_path / "again", RESOURCES)
    assert _digest(tmp_path / "again") == _digest(world[0])
    simulate_world({**SMALL, "seed": 4}, tmp_path / "other", RESOURCES)
    other = _digest(tmp_path / "other")
    assert other["counts.h5ad"] != _digest(world[0])["counts.h5ad"]
    assert other["l1000.gctx"] != _digest(world[0])["l1000.gctx"]


def test_hill_response():
    assert hill_response(0.0, 1.0, 1.5) == 0.0
    assert hill_response(2.0, 2.0, 1.3) == pytest.approx(0.5)
    assert hill_response(10.0, 1.0, 1.0) == pytest.approx(10 / 11)


def test_modz_matches_cmap_recipe():
    # 3 replicates x 5 genes; replicate 3 anti-correlates with the others
    reps = np.array(
        [[1.0, 2.0, 3.0, 4.0, 5.0], [2.0, 1.0, 3.0, 5.0, 4.0], [5.0, 4.0, 3.0, 2.0, 1.5]]
    )
    consensus, cc_q75 = modz(reps[None])
    corr = pd.DataFrame(reps.T).corr(method="spearman").to_numpy()
    # corr(1,2) = 0.8, corr(1,3) = -1, corr(2,3) = -0.8 (hand-checked ranks)
    np.testing.assert_allclose(corr[np.triu_indices(3, 1)], [0.8, -1.0, -0.8])
    raw = np.array([(0.8 + 0) / 2, (0.8 + 0) / 2, 0.01])  # negatives clipped, floor 0.01
    np.testing.assert_allclose(consensus[0], raw / raw.sum() @ reps)
    assert cc_q75[0] == pytest.approx(np.quantile([0.8, -1.0, -0.8], 0.75))


def _single(truth):
    obs = truth.obs
    return obs[(obs[schema.DRUG] != "control") & ~obs[schema.DRUG].str.contains("+", regex=False)]


def test_true_effect_grows_with_dose(truth):
    single = _single(truth)
    size = pd.Series(np.abs(truth[single.index].layers["lfc"]).mean(axis=1), index=single.index)
    table = single.assign(size=size, dose_value=single[schema.DOSE].astype(str).astype(float))
    for (_, _), group in table.groupby([schema.CELL_LINE, schema.DRUG], observed=True):
        assert np.all(np.diff(group.sort_values("dose_value")["size"].to_numpy()) > 0)
    ctrl = truth.obs[schema.DRUG] == "control"
    assert np.all(truth.layers["lfc"][ctrl.to_numpy()] == 0)


def test_measured_effect_grows_with_dose(counts, truth):
    norm = counts.X.multiply(1e4 / counts.X.sum(axis=1)).tocsr().log1p()
    obs = counts.obs
    keys = (
        obs[schema.CELL_LINE].astype(str)
        + "|"
        + obs[schema.DRUG].astype(str)
        + "|"
        + obs[schema.DOSE].astype(str)
    )
    codes, labels = pd.factorize(keys)
    onehot = np.zeros((len(labels), len(codes)))
    onehot[codes, np.arange(len(codes))] = 1.0 / np.bincount(codes)[codes]
    bulk = pd.DataFrame(np.asarray(onehot @ norm), index=labels)
    single = _single(truth)
    measured = pd.Series(
        {
            c: np.abs(bulk.loc[c] - bulk.loc[f"{c.split('|')[0]}|control|0"]).mean()
            for c in single.index
        }
    )
    table = single.assign(size=measured)
    by_dose = table.groupby(schema.DOSE, observed=True)["size"].mean()
    assert by_dose["0.1"] < by_dose["1"] < by_dose["10"]
    per_drug = table.pivot_table(
        index=[schema.CELL_LINE, schema.DRUG], columns=schema.DOSE, values="size", observed=True
    )
    # where the true effect at 10 uM is at least 1.5x the one at 0.1 uM (drugs with EC50 well
    # below 0.1 uM are saturated at both, and noise decides), the measured one is larger too
    true = table.assign(size=np.abs(truth[single.index].layers["lfc"]).mean(axis=1))
    true = true.pivot_table(
        index=[schema.CELL_LINE, schema.DRUG], columns=schema.DOSE, values="size", observed=True
    )
    rising = true["10"] >= 1.5 * true["0.1"]
    assert rising.sum() >= 6  # of 18 (line, drug) pairs; the others saturate below 0.1 uM
    assert (per_drug["10"] > per_drug["0.1"])[rising].mean() >= 0.9


def test_same_moa_effects_are_more_similar(truth):
    top = truth.obs[schema.DOSE] == "10"
    lfc = truth.layers["lfc"][top.to_numpy()]
    unit = lfc / np.linalg.norm(lfc, axis=1, keepdims=True)
    cos = unit @ unit.T
    obs = truth.obs[top]
    moa, drug = obs["moa"].to_numpy(), obs[schema.DRUG].to_numpy()
    line = obs[schema.CELL_LINE].to_numpy()
    same_line = line[:, None] == line[None, :]
    other_drug = drug[:, None] != drug[None, :]
    same_moa = moa[:, None] == moa[None, :]
    within = cos[same_line & other_drug & same_moa].mean()
    between = cos[same_line & ~same_moa].mean()
    assert within > between + 0.3


def test_ground_truth_table(truth, counts, drugs):
    obs = truth.obs
    assert (obs[schema.CONDITION] == schema.add_condition(obs)).all()
    assert list(truth.var_names) == list(counts.var_names)
    observed = set(schema.add_condition(counts.obs))
    assert set(obs[schema.CONDITION]) == observed
    single = _single(truth)
    assert (single["moa"] == drugs.loc[single[schema.DRUG], "moa"].to_numpy()).all()
    params = truth.uns["params"]
    assert params["seed"] == 3 and params["n_genes"] == 300 and params["dispersion"] == 5.0
    programs = truth.uns["programs"]
    assert sorted(int(k) for k in programs) == list(range(8))
    for k, genes in programs.items():
        assert (truth.var.loc[list(genes), "program"] == int(k)).all()


def test_drugs_follow_the_panel(drugs):
    panel = pd.read_csv(RESOURCES / "drugs/drug_panel.tsv", sep="\t").set_index("drug")
    assert (drugs["scaffold"] == panel.loc[drugs.index, "moa"]).all()  # the panel group
    assert (drugs["smiles"] == panel.loc[drugs.index, "smiles"]).all()
    in_sc = drugs["in_single_cell"] == "true"
    assert in_sc.sum() == 9 and (~in_sc).sum() == 4
    assert (drugs[in_sc].groupby("moa").size() == 3).all()
    assert set(drugs["moa"]) == set(drugs["scaffold"])


def test_moa_scaffold_mismatch_fraction(drugs):
    # SMALL: 3 groups x (3 single-cell + [2, 1, 1] L1000-only); rate 0.25 reassigns per group
    # max(1, round(0.75)) = 1 single-cell drug and round(0.5), round(0.25), round(0.25) = 1, 0, 0
    # L1000-only drugs: 4 of 13
    mismatched = drugs["moa"] != drugs["scaffold"]
    assert mismatched.sum() == 4
    in_sc = drugs["in_single_cell"] == "true"
    assert (drugs[in_sc & mismatched].groupby("moa").size() == 1).all()
    assert drugs.loc[in_sc & mismatched, "moa"].nunique() == 3  # at least one in every MoA
    # a cycle: each group gives to one other MoA, each MoA receives from one other group
    moves = drugs[mismatched].groupby("scaffold")["moa"].unique()
    assert all(len(m) == 1 for m in moves)
    receivers = [m[0] for m in moves]
    assert len(set(receivers)) == len(receivers) == 3 and not any(moves.index == receivers)
    for moa, group in drugs.groupby("moa"):
        own = (group["scaffold"] == moa).sum()
        assert own > len(group) - own  # structure tracks MoA on average
    # the default world: 6 groups x (4 + 4) drugs, 1 + 1 reassigned per group: 12 of 48 = 0.25
    single, only, total = moa_mismatch_counts(resolve_params({}))
    assert (single + only).sum() / total.sum() == 0.25 and single == 1
    none = moa_mismatch_counts(resolve_params({"moa_scaffold_mismatch": 0}))
    assert none[0] == 0 and none[1].sum() == 0


def test_moa_scaffold_mismatch_zero_and_bad_values(tmp_path):
    params = {**SMALL, "citeseq_cells": 20, "moa_scaffold_mismatch": 0}
    simulate_world(params, tmp_path / "w", RESOURCES)
    table = io.read_drug_table(tmp_path / "w" / "drugs.tsv")
    assert (table["moa"] == table["scaffold"]).all()
    with pytest.raises(ValueError, match=r"'moa_scaffold_mismatch' = 0.5 must lie in \[0, 0.5\)"):
        resolve_params({"moa_scaffold_mismatch": 0.5})
    with pytest.raises(ValueError, match="moa_scaffold_mismatch.*majority"):
        resolve_params({"drugs_per_moa": 1, "n_l1000_only_drugs": 0})
    with pytest.raises(ValueError, match="moa_scaffold_mismatch.*n_moas >= 2"):
        resolve_params({"n_moas": 1})


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_reassigned_drugs_act_like_their_moa(world, truth, drugs):
    # effects (ground truth) and L1000 signatures of a drug whose MoA is not its scaffold group's
    # resemble its MoA's drugs more than its structural relatives'
    top = truth.obs[(truth.obs[schema.DOSE] == "10") & (truth.obs[schema.CELL_LINE] == "CL01")]
    lfc = pd.DataFrame(_unit(truth[top.index].layers["lfc"]), index=top[schema.DRUG].to_numpy())
    with h5py.File(world[0] / "l1000.gctx", "r") as gct:
        sig = gct["/0/DATA/0/matrix"][:]
        name = [s.decode() for s in gct["/0/META/COL/pert_iname"][:]]
        dose = gct["/0/META/COL/pert_dose"][:]
    l1000 = pd.DataFrame(_unit(sig), index=name)[dose == 10.0].groupby(level=0).mean()
    for profiles in (lfc, l1000):
        profiles = profiles.loc[[d for d in drugs.index if d in profiles.index]]
        cos = pd.DataFrame(
            profiles.to_numpy() @ profiles.to_numpy().T,
            index=profiles.index,
            columns=profiles.index,
        )
        moa, scaffold = drugs["moa"], drugs["scaffold"]
        for d in profiles.index[(moa != scaffold)[profiles.index]]:
            others = profiles.index[profiles.index != d]
            same_moa = others[(moa[others] == moa[d]).to_numpy()]
            same_scaffold = others[((scaffold[others] == scaffold[d]) & (moa[others] != moa[d]))]
            assert cos.loc[d, same_moa].mean() > cos.loc[d, same_scaffold].mean() + 0.2


def test_targets_lie_in_moa_programs(drugs, truth):
    moa_programs = truth.uns["moa_programs"]
    for _, row in drugs.iterrows():
        genes = row["targets"].split(";")
        assert 1 <= len(genes) <= 3
        assert set(truth.var.loc[genes, "program"]) <= set(
            np.asarray(moa_programs[row["moa"]]).tolist()
        )


def test_drug_panel_structure_clusters_by_group():
    # the panel's 'moa' column is the scaffold group of the world's drugs (drugs.tsv 'scaffold')
    panel = pd.read_csv(RESOURCES / "drugs/drug_panel.tsv", sep="\t")
    assert list(panel.columns) == ["drug", "smiles", "moa", "source"]
    assert panel["drug"].is_unique and panel.groupby("moa").size().min() >= 8
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=1024)
    fps = [gen.GetFingerprint(Chem.MolFromSmiles(s)) for s in panel["smiles"]]
    sim = np.array([DataStructs.BulkTanimotoSimilarity(f, fps) for f in fps])
    moa = panel["moa"].to_numpy()
    same = moa[:, None] == moa[None, :]
    off_diagonal = ~np.eye(len(panel), dtype=bool)
    assert sim[same & off_diagonal].mean() > 2 * sim[~same].mean()


def test_combinations(counts):
    obs = counts.obs.astype(str)
    combos = obs[obs[schema.DRUG].str.contains("+", regex=False)]
    assert combos[schema.DRUG].nunique() == 4 and set(combos[schema.DOSE]) == {"1+1"}
    singles = set(zip(obs[schema.CELL_LINE], obs[schema.DRUG], obs[schema.DOSE]))
    lines = set(obs[schema.CELL_LINE])
    for combo in combos[schema.DRUG].unique():
        parts = schema.components(combo)
        assert parts == sorted(parts) and len(set(parts)) == 2
        assert set(combos.loc[combos[schema.DRUG] == combo, schema.CELL_LINE]) == lines
        for line in lines:
            for part in parts:
                assert all((line, part, d) in singles for d in ("0.1", "1", "10"))


def test_l1000_gctx(world, counts, drugs):
    with h5py.File(world[0] / "l1000.gctx", "r") as f:
        assert f.attrs["version"] == b"GCTX1.0"
        matrix = f["/0/DATA/0/matrix"][:]
        row = {k: f["/0/META/ROW"][k][:] for k in f["/0/META/ROW"]}
        col = {k: f["/0/META/COL"][k][:] for k in f["/0/META/COL"]}
    symbols = [s.decode() for s in row["pr_gene_symbol"]]
    assert symbols == list(counts.var_names[counts.var["is_landmark"]])
    assert (row["pr_is_lmark"] == 1).all() and len(row["id"]) == 60
    # (signatures, landmarks): 13 drugs x 2 L1000 lines x 3 doses + 26 DMSO controls per line
    assert matrix.shape == (13 * 2 * 3 + 2 * 26, 60) and matrix.dtype == np.float32
    for key in ("id", "pert_iname", "pert_dose", "cell_id", "distil_cc_q75", "distil_ss", "tas"):
        assert len(col[key]) == matrix.shape[0], key
    assert {s.decode() for s in col["pert_iname"]} == set(drugs.index) | {"DMSO"}
    assert not {s.decode() for s in col["cell_id"]} & set(counts.obs[schema.CELL_LINE])
    assert (col["distil_ss"] == (np.abs(matrix) >= 2).sum(axis=1)).all()
    expected_tas = np.sqrt(col["distil_ss"] * np.maximum(col["distil_cc_q75"], 0) / 60)
    np.testing.assert_allclose(col["tas"], expected_tas)
    dose = col["pert_dose"]
    assert np.median(col["tas"][dose == 10.0]) > np.median(col["tas"][dose == 0.1])
    assert np.median(col["tas"][dose == 0.1]) > np.median(col["tas"][dose == -666])  # controls


def test_priors(world, counts):
    out = world[0]
    coding = set(counts.var_names[counts.var["protein_coding"]])
    program = counts.var["program"]
    ppi = pd.read_csv(out / "ppi.tsv", sep="\t")
    assert list(ppi.columns) == ["gene1", "gene2", "score"]
    assert ppi["score"].between(150, 999).all()
    assert set(ppi["gene1"]) | set(ppi["gene2"]) <= coding
    within = program[ppi["gene1"]].to_numpy() == program[ppi["gene2"]].to_numpy()
    assert within.mean() > 0.5
    complexes = pd.read_csv(out / "complexes.tsv", sep="\t")
    edges = set(zip(ppi["gene1"], ppi["gene2"]))
    for genes in complexes["genes"].str.split(";"):
        assert program[genes].nunique() == 1 and set(genes) <= coding
        assert all((a, b) in edges for i, a in enumerate(genes) for b in genes[i + 1 :])
    sets = [
        line.rstrip("\n").split("\t") for line in (out / "gene_sets.gmt").read_text().splitlines()
    ]
    named = {s[0]: s[2:] for s in sets}
    assert sorted(program[named["PROGRAM_03"]].unique()) == [3]
    assert any(name.startswith("MIXED_") for name in named)
    dti = pd.read_csv(out / "dti.tsv", sep="\t")
    assert dti["score"].between(0, 1).all() and set(dti["gene"]) <= set(counts.var_names)


def test_citeseq_protein_follows_rna(world, counts):
    cite = ad.read_h5ad(world[0] / "citeseq.h5ad")
    cite = cite[(cite.obs["drug"] == "control").to_numpy()]
    protein = cite.obsm["protein"]
    assert cite.n_obs == 300 and protein.shape == (300, 12)
    assert list(cite.var_names) == list(counts.var_names)
    assert counts.var.loc[protein.columns, "protein_coding"].all()
    rna = cite.X.toarray()
    rna = np.log1p(rna / rna.sum(axis=1, keepdims=True) * 1e4)
    rho = [
        pd.Series(rna[:, cite.var_names.get_loc(g)]).corr(
            pd.Series(protein[g].to_numpy()), method="spearman"
        )
        for g in protein.columns
    ]
    assert np.median(rho) > 0.1


def test_citeseq_treated_cells_and_complexes(world, counts):
    """Treated CITE-seq cells: the single-cell drugs at every dose in the first
    citeseq_treated_lines lines, 10 cells each; the panel carries whole complexes (>= 3 subunits),
    and a drug moves the proteins of its line away from the line's untreated cells."""
    cite = ad.read_h5ad(world[0] / "citeseq.h5ad")
    obs = cite.obs.astype(str)
    treated = obs[obs["drug"] != "control"]
    sc_drugs = set(counts.obs["drug"].astype(str)) - {"control"}
    assert set(treated["drug"]) == {d for d in sc_drugs if "+" not in d}
    assert set(treated["dose"]) == {"0.1", "1", "10"}
    assert len(set(treated["cell_line"])) == 2  # SMALL has two lines, both treated
    assert treated.groupby(["cell_line", "drug", "dose"]).size().eq(10).all()
    panel = set(cite.obsm["protein"].columns)
    complexes = pd.read_csv(world[0] / "complexes.tsv", sep="\t")
    on_panel = [c.split(";") for c in complexes["genes"] if set(c.split(";")) <= panel]
    assert on_panel and all(len(c) >= 3 for c in on_panel)
    protein = np.log1p(cite.obsm["protein"].to_numpy(float))
    line = treated["cell_line"].iloc[0]
    ctrl = protein[((obs["cell_line"] == line) & (obs["drug"] == "control")).to_numpy()]
    high = protein[((obs["cell_line"] == line) & (obs["dose"] == "10")).to_numpy()]
    low_dose = protein[((obs["cell_line"] == line) & (obs["dose"] == "0.1")).to_numpy()]
    assert (
        np.abs(high.mean(0) - ctrl.mean(0)).mean() > np.abs(low_dose.mean(0) - ctrl.mean(0)).mean()
    )


def test_bad_params_are_named(tmp_path):
    with pytest.raises(ValueError, match="n_cels"):
        resolve_params({"n_cels": 3})
    with pytest.raises(ValueError, match="zero_fraction"):
        resolve_params({"zero_fraction": 1.2})
    with pytest.raises(ValueError, match="n_moas"):
        simulate_world({**SMALL, "n_moas": 11}, tmp_path / "bad", RESOURCES)
    assert not (tmp_path / "bad").exists()


# ------------------------------------------------------------------------ shared response
@pytest.fixture(scope="module")
def no_shared(tmp_path_factory):
    """SMALL without the shared response: every random draw is the same (the component's draws
    happen whatever its size), so truth differs from `truth` by the shared term only."""
    out = tmp_path_factory.mktemp("no_shared")
    simulate_world({**SMALL, "shared_response_size": 0.0, "citeseq_cells": 20}, out, RESOURCES)
    return ad.read_h5ad(out / "ground_truth.h5ad")


def _shared_slopes(truth, no_shared):
    """Per condition, the least-squares slope of lfc(with) - lfc(without) on the shared program's
    gene effect, over well-expressed genes (log1p is close to log there)."""
    genes = np.asarray(truth.uns["shared_response"]["genes"])
    expressed = (np.asarray(no_shared.X) > 2).all(axis=0) & (np.abs(genes) > 0)
    diff = (truth.layers["lfc"] - no_shared.layers["lfc"])[:, expressed]
    x = genes[expressed] - genes[expressed].mean()
    diff = diff - diff.mean(axis=1, keepdims=True)  # the softmax normaliser shifts every gene
    r = np.array([np.corrcoef(d, x)[0, 1] if d.any() else 0.0 for d in diff])
    return pd.Series(diff @ x / (x @ x), index=truth.obs_names), pd.Series(r, index=truth.obs_names)


def test_shared_response_scales_with_dose_response_drug_and_line(truth, no_shared):
    slope, r = _shared_slopes(truth, no_shared)
    obs = truth.obs
    assert (slope[obs[schema.DRUG] == "control"] == 0).all()
    potency = truth.uns["drug_potency"].set_index("drug")
    line_sens = truth.uns["shared_response"]["line_sensitivity"]
    single = _single(truth)
    expected = pd.Series(
        [
            hill_response(float(row[schema.DOSE]), *potency.loc[row[schema.DRUG], ["ec50", "hill"]])
            * potency.at[row[schema.DRUG], "shared_strength"]
            * line_sens[row[schema.CELL_LINE]]
            for _, row in single.iterrows()
        ],
        index=single.index,
    )
    # lfc(with) - lfc(without) is the shared program's gene effect times f_i(d) a_i sigma_l
    assert r[single.index].min() > 0.95
    np.testing.assert_allclose(slope[single.index], expected, rtol=0.1, atol=0.01)
    # combinations: the parts' shared responses add up (the interaction acts on MoA programs)
    combos = obs[obs[schema.DRUG].str.contains("+", regex=False)]
    for cond, row in combos.iterrows():
        parts = schema.components(row[schema.DRUG])
        singles = [f"{row[schema.CELL_LINE]}|{d}|1" for d in parts]
        assert slope[cond] == pytest.approx(slope[singles].sum(), rel=0.1, abs=0.01)


def test_shared_response_raises_the_correlation_with_the_mean_response(truth, no_shared):
    # the property the component exists for (issue: world vs real): a drug's response correlates
    # with the mean response of the other drugs, per cell line at the top dose
    def median_corr(t):
        top = _single(t)
        top = top[top[schema.DOSE] == "10"]
        values = []
        for _, group in top.groupby(schema.CELL_LINE, observed=True):
            lfc = t[group.index].layers["lfc"]
            others = (lfc.sum(axis=0) - lfc) / (len(lfc) - 1)
            values += [np.corrcoef(a, b)[0, 1] for a, b in zip(lfc, others)]
        return np.median(values)

    assert median_corr(truth) > median_corr(no_shared) + 0.1
    program = np.asarray(truth.uns["shared_response"]["program"])
    assert (program[:2] < 0).all()  # the cell-cycle programs go down (SMALL: 3 phases)
    assert np.sqrt(np.mean(program**2)) == pytest.approx(resolve_params({})["shared_response_size"])


def test_shared_response_params_are_checked():
    for key in ("shared_response_size", "shared_response_drug_sd", "shared_response_line_sd"):
        with pytest.raises(ValueError, match=rf"'{key}' = -0.1 must be >= 0"):
            resolve_params({key: -0.1})


def test_l1000_vehicle_controls(world):
    gct = io_l1000.read_gct(world[0] / "l1000.gctx")
    meta = gct.col_meta
    control = meta["pert_type"] == "ctl_vehicle"
    assert (meta.loc[control, "pert_iname"] == "DMSO").all()
    assert (meta.loc[control, "pert_dose"] == -666).all()
    assert meta[control].groupby("cell_id").size().tolist() == [26, 26]  # SMALL: 2 L1000 lines
    z = gct.data.loc[:, control].to_numpy()
    assert abs(z.mean()) < 0.05 and (np.abs(z) >= 2).mean() < 0.1  # noise only
