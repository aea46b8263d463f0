"""StateXDiff's cell-state priors (arXiv:2605.16104 §3.2, App. A.1.2, A.2): the RNA -> protein
translator, the PQM reliability q, VMCS and the App. A.2.3 validation, against hand computations
and through the rules' own steps on a small simulated world."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from scpert import steps
from scpert.data import io, schema
from scpert.errors import InputError
from scpert.priors import pqm, protein, vmcs

from .conftest import PRIOR_WORLD, REPO

CONTROL = "control"
#: PRIOR_WORLD with enough CITE-seq cells to train and score the translator
WORLD = {**PRIOR_WORLD, "citeseq_cells": 600, "n_proteins": 16}


# ------------------------------------------------------------------------------ the world
@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The small world, one drug_ood split and the four cell-state outputs of the rules' steps."""
    from scpert.data.simulate import simulate_world

    root = tmp_path_factory.mktemp("cell_state")
    world = root / "world"
    simulate_world(WORLD, world, REPO / "resources")
    paths = {
        "h5ad": str(root / "processed.h5ad"),
        "split": str(root / "split.tsv"),
        "genes": str(root / "genes.tsv"),
    }
    steps.preprocess(
        world / "counts.h5ad",
        paths["h5ad"],
        {"min_genes": 10, "min_cells": 3, "min_cells_per_condition": 5},
        CONTROL,
    )
    split = {"type": "drug_ood", "seed": 0, "test_fraction": 0.3, "val_fraction": 0.3}
    steps.make_split(paths["h5ad"], world / "drugs.tsv", paths["split"], split, CONTROL)
    steps.select_hvg(paths["h5ad"], paths["split"], paths["genes"], {"n_top_genes": 200}, CONTROL)
    latent = {"preset": "tiny", "params": {"hidden_dim": [32], "steps": 20}}
    steps.finetune_latent(paths, root / "latent", latent, CONTROL, seed=0, device="cpu", threads=1)
    steps.train_translator(
        world / "citeseq.h5ad",
        paths["h5ad"],
        root / "translator",
        {"preset": "tiny"},
        CONTROL,
        device="cpu",
    )
    inputs = {**paths, "latent": root / "latent", "complexes": world / "complexes.tsv"}
    steps.infer_protein(
        {**inputs, "translator": root / "translator"}, root / "protein", {}, CONTROL, device="cpu"
    )
    steps.train_vmcs(
        {**inputs, "protein": root / "protein"},
        root / "vmcs",
        {"preset": "tiny", "params": {"epochs": 3}},
        CONTROL,
        device="cpu",
    )
    steps.validate_pqm(
        world / "citeseq.h5ad",
        root / "translator",
        root / "validation.tsv",
        root / "validation.pdf",
        root / "validation.png",
        {},
        CONTROL,
        complexes_path=world / "complexes.tsv",
        device="cpu",
    )
    return root, world, paths


# ------------------------------------------------------------------------------ translator
def test_translator_beats_the_mean_protein_baseline_on_held_out_cells(built):
    root, world, _ = built
    translator = protein.load_translator(root / "translator")
    meta = json.loads((root / "translator" / protein.TRANSLATOR_JSON).read_text())
    cite = io.read_h5ad(world / "citeseq.h5ad")
    held = set(pd.read_csv(root / "translator" / protein.HELDOUT_CELLS, sep="\t")["cell"])
    untreated = (cite.obs["drug"].astype(str) == CONTROL).to_numpy()
    is_held = np.array([c in held for c in cite.obs_names])
    assert not (is_held & ~untreated).any() and is_held.sum() == round(0.2 * untreated.sum())
    cite = cite[untreated]  # the training cells' scale: levels over the untreated cells
    is_held = is_held[untreated]
    rna = protein.rna_levels(cite.X)
    col = [list(cite.var_names).index(g) for g in translator.genes]
    levels = protein.protein_levels(cite.obsm["protein"].to_numpy())
    p_hat, g_p = translator.translate(rna[is_held][:, col])
    assert g_p.shape == (is_held.sum(), 128) and (p_hat >= 0).all()
    baseline = levels[~is_held].mean(axis=0)  # mean protein of the training cells
    mse = ((p_hat - levels[is_held]) ** 2).mean()
    mse_mean = ((baseline - levels[is_held]) ** 2).mean()
    assert mse < 0.8 * mse_mean
    assert meta["heldout_mse"] == pytest.approx(mse, rel=1e-4)
    assert meta["heldout_mse_mean_baseline"] == pytest.approx(mse_mean, rel=1e-4)


def test_translator_folder_errors_name_the_field(tmp_path, built):
    root, world, paths = built
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / protein.TRANSLATOR_JSON).write_text(json.dumps({"kind": "sclinguist-v9"}))
    with pytest.raises(InputError, match="translator.json: field 'kind'"):
        protein.load_translator(bad)
    cite = io.read_h5ad(world / "citeseq.h5ad")
    del cite.obsm["protein"]
    cite.write_h5ad(tmp_path / "no_protein.h5ad")
    with pytest.raises(InputError, match=r"no_protein.h5ad: CITE-seq data needs obsm\['protein'\]"):
        steps.train_translator(
            tmp_path / "no_protein.h5ad", paths["h5ad"], tmp_path / "out", {}, device="cpu"
        )
    assert not (tmp_path / "out").exists()


def test_citeseq_proteins_as_features_of_x(built):
    """A 10x-style single matrix (ADT features in X, var feature_types) reads like obsm."""
    import anndata as ad
    import scipy.sparse as sp

    _, world, _ = built
    cite = io.read_h5ad(world / "citeseq.h5ad")
    adt = cite.obsm["protein"]
    merged = ad.AnnData(
        sp.hstack([cite.X, sp.csr_matrix(adt.to_numpy(np.float32))]).tocsr(),
        obs=cite.obs,
        var=pd.DataFrame(
            {
                "feature_types": ["Gene Expression"] * cite.n_vars
                + ["Antibody Capture"] * adt.shape[1]
            },
            index=[*cite.var_names, *[f"{p}_ADT" for p in adt.columns]],
        ),
    )
    rna, values, names = protein.citeseq_tables(merged, "merged.h5ad")
    assert list(rna.var_names) == list(cite.var_names) and names == [f"{p}_ADT" for p in adt]
    np.testing.assert_array_equal(values, adt.to_numpy(float))


def test_checkpoint_translator_is_checked_and_copied(built, tmp_path):
    root, world, paths = built
    out = tmp_path / "copied"
    steps.train_translator(
        world / "citeseq.h5ad",
        paths["h5ad"],
        out,
        {},
        CONTROL,
        checkpoint=root / "translator",
        device="cpu",
    )
    a, b = protein.load_translator(root / "translator"), protein.load_translator(out)
    x = np.random.default_rng(0).random((5, len(a.genes)), dtype=np.float32)
    np.testing.assert_array_equal(a.translate(x)[1], b.translate(x)[1])


# ------------------------------------------------------------------------------------- PQM
def test_rank_consistency_equals_a_hand_computation():
    rna = np.array([[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 1.0, 2.0]])
    p_hat = np.array([[10.0, 30.0, 20.0, 40.0], [1.0, 2.0, 3.0, 4.0]])
    # row 0: ranks 1234 vs 1324, 1 - 6 * 2 / (4 * 15) = 0.8; row 1: ties get average ranks
    # [1.5, 1.5, 3, 4] vs [1, 2, 3, 4]: 4.5 / sqrt(4.5 * 5)
    np.testing.assert_allclose(pqm.rank_consistency(rna, p_hat), [0.8, 4.5 / math.sqrt(22.5)])


def test_reference_genes_keep_population_spearman_above_threshold():
    rng = np.random.default_rng(0)
    rna = rng.random((200, 5))
    p_hat = np.stack(
        [rna[:, 0], rna[:, 1] + rng.normal(0, 2, 200), -rna[:, 2], rna[:, 3] ** 3, 2 * rna[:, 4]],
        axis=1,
    )
    rna = np.concatenate([rna, np.full((200, 1), np.nan)], axis=1)  # protein f: gene not in RNA
    p_hat = np.concatenate([p_hat, rng.random((200, 1))], axis=1)
    chosen, rho = pqm.reference_genes(rna, p_hat, list("abcdef"), pqm.DEFAULTS)
    assert list(chosen) == [0, 3, 4] and rho[0] == pytest.approx(1.0) and np.isnan(rho[5])
    assert rho[1] < 0.3 and rho[2] == pytest.approx(-1.0)
    strict = {**pqm.DEFAULTS, "threshold": 1.5}  # nothing passes: the 3 best are used
    assert list(pqm.reference_genes(rna, p_hat, list("abcdef"), strict)[0]) == [0, 3, 4]


def test_complex_coherence_and_neighbour_consistency_by_hand():
    p_hat = np.array([[1.0, 1.0, 1.0, 5.0], [1.0, 2.0, 3.0, 0.0]])
    complexes = pqm.complexes_on_panel([["a", "b", "c"], ["a", "d", "x"]], list("abcd"))
    assert [list(c) for c in complexes] == [[0, 1, 2]]  # a+d is 2 subunits on the panel
    cv = np.std([1.0, 2.0, 3.0]) / (2.0 + 1e-6)
    np.testing.assert_allclose(pqm.complex_coherence(p_hat, complexes, 1e-6), [1.0, 1.0 - cv])
    latent = np.array([[0.0], [1.0], [10.0]])
    g_p = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    # k = 1: cell 0's neighbour is cell 1, cell 1's is cell 0, cell 2's is cell 1
    expected = [1 / math.sqrt(2), 1 / math.sqrt(2), 1 / math.sqrt(2)]
    np.testing.assert_allclose(pqm.neighbour_consistency(g_p, latent, k=1), expected)


def test_q_lies_in_the_unit_interval_and_grows_with_each_sub_score():
    rng = np.random.default_rng(1)
    scores = pd.DataFrame(rng.normal(size=(50, 3)), columns=list(pqm.SCORES))
    q, stats = pqm.reliability(scores)
    assert ((q > 0) & (q < 1)).all()
    mean_z = np.mean(
        [(scores[s] - scores[s].mean()) / scores[s].std(ddof=0) for s in pqm.SCORES], 0
    )
    np.testing.assert_allclose(q, 1 / (1 + np.exp(-mean_z)), rtol=1e-5)
    for score in pqm.SCORES:
        bumped = scores.copy()
        bumped.loc[0, score] += 0.5
        q_bumped, _ = pqm.reliability(bumped, stats)  # same statistics: only cell 0 moves
        assert q_bumped[0] > q[0] and np.allclose(q_bumped[1:], q[1:])
        pair = scores.iloc[:2].copy()
        pair.iloc[1] = pair.iloc[0]
        pair.loc[pair.index[1], score] += 1.0  # population statistics: the higher score wins
        assert (
            pqm.reliability(pd.concat([pair, scores.iloc[2:]]))[0][1]
            > pqm.reliability(pd.concat([pair, scores.iloc[2:]]))[0][0]
        )


def test_protein_prior_covers_every_untreated_cell(built):
    root, _, paths = built
    cells = protein.read_cell_proteins(root / "protein")
    adata = io.read_processed(paths["h5ad"], CONTROL)
    controls = adata.obs_names[(adata.obs[schema.DRUG] == CONTROL).to_numpy()]
    assert cells.obs_names == list(controls)
    assert cells.g_p.shape == (len(controls), 128) and cells.g_p.dtype == np.float32
    assert cells.p_hat.shape == (len(controls), len(cells.proteins)) and cells.q.dtype == np.float32
    assert ((cells.q > 0) & (cells.q < 1)).all()
    summary = json.loads((root / "protein" / protein.PQM_JSON).read_text())
    assert len(summary["reference_genes"]) >= 3 and summary["complexes"]
    table = pd.read_csv(root / "protein" / protein.PQM_TSV, sep="\t")
    assert list(table.columns) == ["cell", "s_rc", "s_cx", "s_nb", "q"]
    with pytest.raises(InputError, match="no row for cell"):
        cells.rows(["not-a-cell"])


# ------------------------------------------------------------------------------------ VMCS
def test_cayley_rotation_is_orthogonal():
    torch.manual_seed(0)
    for scale in (0.01, 1.0, 10.0):
        A = torch.randn(64, 64) * scale
        R = vmcs.cayley(A)
        torch.testing.assert_close(R @ R.T, torch.eye(64), atol=1e-5, rtol=0)
    torch.testing.assert_close(vmcs.cayley(torch.zeros(8, 8)), torch.eye(8))  # A = 0: R = I


def test_complementary_masks_never_overlap_and_follow_q_rho():
    q = torch.tensor([0.1, 0.5, 1.0]).repeat_interleave(6000)
    rho_hat = torch.tensor([0.05, 0.3, 0.6, 0.9, 1.0])
    g = torch.Generator().manual_seed(0)
    m_r, m_p, p = vmcs.complementary_masks(q, rho_hat, 0.05, 0.30, g)
    assert not (m_r & m_p).any()
    expected = (0.30 * q[:, None] * rho_hat[None, :]).clamp(0.05, 0.30)
    torch.testing.assert_close(p, expected)
    for level in q.unique():
        rows = q == level
        rate = (m_r | m_p)[rows].float().mean(0)
        torch.testing.assert_close(rate, expected[rows][0], atol=0.015, rtol=0)
        side = m_r[rows].float().mean(0) / rate
        torch.testing.assert_close(side, torch.full_like(side, 0.5), atol=0.08, rtol=0)
    assert expected.min() == pytest.approx(0.05) and expected.max() == pytest.approx(0.30)


def test_mixture_mmd_matches_the_explicit_formula():
    torch.manual_seed(0)
    x, y = torch.randn(6, 3, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64) + 0.5
    sigmas = [0.1, 0.5, 1.0, 2.0, 5.0]

    def k(a, b):
        d2 = float(((a - b) ** 2).sum())
        return sum(math.exp(-d2 / (2 * s * s)) for s in sigmas) / len(sigmas)

    n, m = len(x), len(y)
    kxx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    kyy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kxy = sum(k(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
    assert float(vmcs.mixture_mmd(x, y, sigmas)) == pytest.approx(kxx + kyy - 2 * kxy, rel=1e-10)


def test_paper_preset_is_table_4():
    p = vmcs.PRESETS["paper"]
    table4 = {
        "batch_size": 512,
        "epochs": 100,
        "D": 512,
        "K_s": 25,
        "K_p": 10,
        "mixer_layers": 2,
        "ema_momentum": 0.1,
        "tau_s": 0.5,
        "beta": 0.1,
        "mmd_bandwidths": [0.1, 0.5, 1.0, 2.0, 5.0],
        "p_min": 0.05,
        "p_max": 0.30,
        "lambda_align": 1.0,
        "betas": [0.9, 0.999],
        "lr": 1e-4,
        "weight_decay": 0.01,
        "lr_schedule": "cosine",
        "warmup_fraction": 0.05,
        "grad_clip": 1.0,
        "precision": "bf16",
    }
    assert {key: p[key] for key in table4} == table4
    assert set(vmcs.PRESETS["tiny"]) == set(p)


def test_paper_parameter_counts_per_module():
    model = vmcs.VMCS(128, vmcs.PRESETS["paper"])
    D, H, T = 512, 1024, 384
    projectors = 2 * (128 * H + H + H * D + D) + D * D + 2  # + tau_s, log beta
    layer = 4 * T * T + 4 * T + 2 * (T * 4 * T) + 4 * T + T + 4 * T  # attention, FFN, 2 norms
    tokenizers = 2 * (D * T + T) + (25 + 10) * 2 * T
    mixer = 2 * layer + tokenizers + 2 * T + (2 * T + T * T + T)  # token types, c_cell head
    assert model.parameter_counts() == {"projectors_rotation": projectors, "condition_mixer": mixer}
    assert projectors == 1_575_938  # Table 8: 1.6M


def test_vmcs_training_sees_only_untreated_training_cells(built):
    root, _, paths = built
    seen = pd.read_csv(root / "vmcs" / vmcs.CELLS_TSV, sep="\t")["cell"].astype(str)
    adata = io.read_processed(paths["h5ad"], CONTROL)
    split = io.read_split(paths["split"])
    role = adata.obs[schema.CONDITION].astype(str).map(split.set_index("condition")["split"])
    assert len(seen) and (adata.obs.loc[seen, schema.DRUG] == CONTROL).all()
    assert (role[seen] == "train").all()
    assert not set(seen) & set(adata.obs_names[(role != "train").to_numpy()])
    treated = adata.obs_names[(adata.obs[schema.DRUG] != CONTROL).to_numpy()]
    assert not set(seen) & set(treated)


def test_load_vmcs_gives_frozen_tokens_of_the_contract(built):
    root, _, paths = built
    model = vmcs.load_vmcs(root / "vmcs", "cpu")
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    cells = protein.read_cell_proteins(root / "protein")
    n = 7
    z_c = torch.randn(n, model.d_z)
    g_p, q = torch.from_numpy(cells.g_p[:n]), torch.from_numpy(cells.q[:n])
    out = model.tokens(z_c, g_p, q)
    assert out.shared.shape == (n, model.K_s, model.D_tok)
    assert out.protein.shape == (n, model.K_p, model.D_tok)
    assert out.c_cell.shape == (n, model.D_tok)
    again = model.train().tokens(z_c, g_p, q)  # training mode too: no masking, no EMA update
    model.eval()
    torch.testing.assert_close(out.c_cell, again.c_cell)
    drop = torch.zeros(n, dtype=torch.bool)
    drop[0] = True
    dropped = model.tokens(z_c, g_p, q, drop_protein=drop)
    torch.testing.assert_close(dropped.c_cell[1:], out.c_cell[1:])
    assert not torch.allclose(dropped.c_cell[0], out.c_cell[0])
    info = json.loads((root / "vmcs" / vmcs.VMCS_JSON).read_text())
    assert info["n_cells"] == len(pd.read_csv(root / "vmcs" / vmcs.CELLS_TSV, sep="\t"))


def test_rotation_and_agreement_follow_eqs_2_to_4():
    params = {**vmcs.PRESETS["tiny"], "D": 6}
    torch.manual_seed(0)
    model = vmcs.VMCS(5, params, d_g=4)
    with torch.no_grad():
        model.A.normal_()
    z, g = torch.randn(40, 5), torch.randn(40, 4)
    d = model.decompose(z, g)  # training mode: rho from this batch (EMA not yet seen)
    R = vmcs.cayley(model.A)
    f_r, f_p = model.phi_z(z) @ R.T, model.phi_p(g) @ R.T
    rho = torch.stack([torch.corrcoef(torch.stack([f_r[:, j], f_p[:, j]]))[0, 1] for j in range(6)])
    torch.testing.assert_close((d.rho_hat * 2 - 1), rho, atol=1e-5, rtol=0)
    w = torch.sigmoid(((rho + 1) / 2 - 0.5) / 0.1)
    torch.testing.assert_close(d.h_s, (w * (f_r + f_p) / 2) @ R, atol=1e-5, rtol=0)
    torch.testing.assert_close(d.r_p, ((1 - w) * f_p) @ R, atol=1e-5, rtol=0)
    second = model.decompose(z[:20], g[:20])
    batch_rho = vmcs.batch_pearson(second.f_r, second.f_p)
    torch.testing.assert_close(
        second.rho_hat * 2 - 1, 0.9 * rho + 0.1 * batch_rho, atol=1e-5, rtol=0
    )


# ------------------------------------------------------------------------------ validation
def test_validation_orders_pairings_and_tracks_true_protein(built):
    root, _, _ = built
    table = pd.read_csv(root / "validation.tsv", sep="\t").set_index("quantity")["value"]
    assert table["median_q_matched"] > table["median_q_cross_type"] > table["median_q_shuffled"]
    assert table["spearman_q_true_vs_pred"] > 0 and table["pearson_q_true_vs_pred"] > 0
    assert table["mannwhitney_p_matched_vs_cross_type"] < 0.01
    assert (root / "validation.pdf").stat().st_size and (root / "validation.png").stat().st_size


# ------------------------------------------------- Fig. 3c protein sources (TrueProt, -FT)
@pytest.fixture(scope="module")
def cite_built(built, tmp_path_factory):
    """The world's CITE-seq set as the perturbation dataset (as config/statexdiff_protein_
    modality.yaml reads it), one treated line held out, with the measured and fine-tuned protein
    priors and a VMCS on the measured one."""
    _, world, _ = built
    root = tmp_path_factory.mktemp("cite_sources")
    paths = {
        "h5ad": str(root / "processed.h5ad"),
        "split": str(root / "split.tsv"),
        "genes": str(root / "genes.tsv"),
    }
    steps.preprocess(
        world / "citeseq.h5ad",
        paths["h5ad"],
        {"min_genes": 10, "min_cells": 3, "min_cells_per_condition": 5},
        CONTROL,
    )
    split = {"type": "cell_ood", "seed": 0, "test_fraction": 0.5}
    steps.make_split(paths["h5ad"], world / "drugs.tsv", paths["split"], split, CONTROL)
    steps.select_hvg(paths["h5ad"], paths["split"], paths["genes"], {"n_top_genes": 200}, CONTROL)
    latent = {"preset": "tiny", "params": {"hidden_dim": [32], "steps": 20}}
    steps.finetune_latent(paths, root / "latent", latent, CONTROL, seed=0, device="cpu", threads=1)
    cite = world / "citeseq.h5ad"
    steps.train_translator(
        cite, paths["h5ad"], root / "translator", {"preset": "tiny"}, CONTROL, device="cpu"
    )
    steps.measure_protein({**paths, "citeseq": cite}, root / "protein_measured", {}, CONTROL)
    steps.finetune_translator(
        {**paths, "citeseq": cite, "translator": root / "translator"},
        root / "translator_finetuned",
        {"preset": "tiny"},
        CONTROL,
        device="cpu",
    )
    inputs = {**paths, "latent": root / "latent", "complexes": world / "complexes.tsv"}
    steps.infer_protein(
        {**inputs, "translator": root / "translator_finetuned"},
        root / "protein_finetuned",
        {},
        CONTROL,
        device="cpu",
    )
    steps.train_vmcs(
        {**inputs, "protein": root / "protein_measured"},
        root / "vmcs_measured",
        {"preset": "tiny", "params": {"epochs": 3}},
        CONTROL,
        device="cpu",
    )
    return root, world, paths


def test_measured_protein_prior_is_the_adt_of_every_untreated_cell(cite_built):
    from scpert.priors import protein_sources

    root, world, paths = cite_built
    cells = protein.read_cell_proteins(root / "protein_measured")
    adata = io.read_processed(paths["h5ad"], CONTROL)
    controls = list(adata.obs_names[(adata.obs[schema.DRUG] == CONTROL).to_numpy()])
    assert cells.obs_names == controls
    adt = io.read_h5ad(world / "citeseq.h5ad").obsm["protein"]
    assert cells.proteins == list(adt.columns) and len(cells.proteins) == WORLD["n_proteins"]
    # by hand: log1p(ADT / cell total * median total over these cells)
    counts = adt.loc[controls].to_numpy(dtype=float)
    total = counts.sum(axis=1, keepdims=True)
    levels = np.log1p(counts / total * np.median(total))
    np.testing.assert_allclose(cells.p_hat, levels, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(cells.g_p, cells.p_hat)  # g_p as wide as the panel
    assert cells.g_p.shape == (len(controls), WORLD["n_proteins"])
    assert cells.q.dtype == np.float32 and (cells.q == 1).all()  # measured: never down-weighted
    summary = json.loads((root / "protein_measured" / protein.PQM_JSON).read_text())
    assert summary["source"] == protein_sources.MEASURED and summary["q"] == 1.0
    # VMCS trains on it with phi_p from the panel to D
    model = vmcs.load_vmcs(root / "vmcs_measured", "cpu")
    assert model.d_g == WORLD["n_proteins"]
    assert model.phi_p.net[0].in_features == WORLD["n_proteins"]


def test_measured_protein_prior_needs_the_citeseq_cells_themselves(built, tmp_path):
    _, world, paths = built  # processed from counts.h5ad: its cells have no ADT row
    inputs = {**paths, "citeseq": world / "citeseq.h5ad"}
    with pytest.raises(InputError, match=r"citeseq\.h5ad: no ADT row .* untreated cell"):
        steps.measure_protein(inputs, tmp_path / "out", {}, CONTROL)
    assert not (tmp_path / "out").exists()


def test_finetuned_translator_improves_on_the_split_and_feeds_the_protein_prior(cite_built):
    from scpert.data.preprocess import train_cells_mask
    from scpert.priors import protein_sources

    root, world, paths = cite_built
    base = protein.load_translator(root / "translator")
    tuned = protein.load_translator(root / "translator_finetuned")
    assert (tuned.genes, tuned.proteins) == (base.genes, base.proteins)
    report = json.loads((root / "translator_finetuned" / protein_sources.FINETUNE_JSON).read_text())
    adata = io.read_processed(paths["h5ad"], CONTROL)
    split = io.read_split(paths["split"])
    n_seen = int(train_cells_mask(adata.obs, split, CONTROL).sum())
    assert report["n_train_cells"] + report["n_heldout_cells"] == n_seen
    assert report["n_heldout_cells"] == round(0.2 * n_seen)
    # held-out CITE-seq training-split cells: fine-tuning lowers the error, both beat the mean
    after, before = report["after"], report["before"]
    assert after["heldout_mse"] < before["heldout_mse"] < before["heldout_mse_mean_baseline"]
    base_state = torch.load(root / "translator" / protein.TRANSLATOR_STATE)
    tuned_state = torch.load(root / "translator_finetuned" / protein.TRANSLATOR_STATE)
    assert not torch.equal(base_state["value"], tuned_state["value"])
    cells = protein.read_cell_proteins(root / "protein_finetuned")
    controls = list(adata.obs_names[(adata.obs[schema.DRUG] == CONTROL).to_numpy()])
    assert cells.obs_names == controls and cells.g_p.shape == (len(controls), 128)
    assert ((cells.q > 0) & (cells.q < 1)).all()
    x = adata[controls][:, tuned.genes].X
    np.testing.assert_allclose(cells.g_p, tuned.translate(x)[1], rtol=1e-5, atol=1e-6)


def test_finetune_settings_errors_name_the_config_key():
    from scpert.priors import protein_sources

    assert (
        protein_sources.resolve_finetune({})["steps"] == protein_sources.FINETUNE["tiny"]["steps"]
    )
    assert protein_sources.resolve_finetune({"params": {"steps": 7}})["steps"] == 7
    with pytest.raises(InputError, match="priors.translator_finetune.preset"):
        protein_sources.resolve_finetune({"preset": "huge"})
    with pytest.raises(InputError, match=r"priors.translator_finetune.params: .*'stepz'"):
        protein_sources.resolve_finetune({"params": {"stepz": 1}})
