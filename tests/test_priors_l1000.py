"""L1000 views and MDT (StateXDiff §3.3, App. A.3.2–A.3.4, Table 5): reader, TAS, soft labels,
losses, test-drug exclusion, paper preset, training, and the rule functions' output contract."""

from __future__ import annotations

import math
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from scpert import steps
from scpert.chem import structure_embedding
from scpert.data.io import read_drug_table
from scpert.data.schema import SchemaError
from scpert.priors import evaluate, l1000, mdt, outputs, sources

from .conftest import SHARED_DATA  # noqa: E402

SHARED_GCT = SHARED_DATA / "l1000_a375_24h_978x377.gctx"


# -------------------------------------------------------------------------------------- reader
@pytest.mark.skipif(not SHARED_GCT.is_file(), reason="shared L1000 file not on this machine")
def test_reader_on_real_l1000_file_gct_text_named_gctx():
    assert not l1000.is_hdf5(SHARED_GCT)  # GCT 1.3 text despite the .gctx name
    gct = l1000.read_gct(SHARED_GCT)
    assert gct.data.shape == (978, 377) and gct.data.dtypes.unique().tolist() == [np.float32]
    rows, symbols = l1000.landmark_rows(gct, SHARED_GCT)
    assert (
        len(rows) == 978 and len(set(symbols)) == 978 and symbols[:3] == ["PSME1", "CISD1", "VDAC1"]
    )
    assert gct.row_meta.index[0] == "200814_at"
    assert gct.data.iloc[0, :2].tolist() == pytest.approx([-0.5123, -0.6745])
    meta = gct.col_meta
    assert {"pert_iname", "pert_dose", "cell_id", "pert_type"} <= set(meta.columns)
    assert meta.loc["LJP005_A375_24H_X1_B19:A07", ["pert_iname", "pert_dose"]].tolist() == [
        "CP-724714",
        10.0,
    ]
    assert (meta["pert_iname"] == "DMSO").sum() == 26 and meta["pert_iname"].nunique() == 60
    # views: controls dropped, 3 per compound (single cell line A375), TAS = mean |z|
    drugs = sorted(set(meta["pert_iname"]) - {"DMSO"})
    views = l1000.select_views(gct, drugs, k=3)
    assert len(views.x) == 3 * len(drugs) and views.x.shape[1] == 978
    first = views.meta.iloc[0]
    z = gct.data[first["id"]].to_numpy()
    assert first["tas"] == pytest.approx(np.abs(z).mean(), rel=1e-5)
    assert views.tas.max() == pytest.approx(1.0)


def _write_gctx(path: Path):
    with h5py.File(path, "w") as f:
        data = np.arange(12, dtype=np.float32).reshape(4, 3)  # (columns, rows)
        f.create_dataset("/0/DATA/0/matrix", data=data)
        f.create_dataset("/0/META/ROW/id", data=np.array([b"r1", b"r2", b"r3"]))
        f.create_dataset("/0/META/ROW/pr_gene_symbol", data=np.array([b"A", b"B", b"C"]))
        f.create_dataset("/0/META/COL/id", data=np.array([b"c1", b"c2", b"c3", b"c4"]))
        f.create_dataset("/0/META/COL/pert_dose", data=np.array([0.1, 1.0, 10.0, 3.0]))
    return data


def test_gctx_detected_by_content_and_column_subset(tmp_path):
    path = tmp_path / "signatures.gct"  # HDF5 content, text-like name
    data = _write_gctx(path)
    assert l1000.is_hdf5(path)
    gct = l1000.read_gct(path)
    np.testing.assert_array_equal(gct.data.to_numpy(), data.T)
    assert gct.row_meta["pr_gene_symbol"].tolist() == ["A", "B", "C"]
    sub = l1000.read_gct(path, cids=["c4", "c1"], rids=["r3", "r1"])
    assert sub.data.columns.tolist() == ["c4", "c1"] and sub.data.index.tolist() == ["r3", "r1"]
    np.testing.assert_array_equal(sub.data.to_numpy(), data[[3, 0]][:, [2, 0]].T)
    assert sub.col_meta["pert_dose"].tolist() == [3.0, 0.1]
    rows, cols = l1000.read_gct_meta(path)
    assert rows.index.tolist() == ["r1", "r2", "r3"] and cols.shape == (4, 1)
    with pytest.raises(SchemaError, match=r"signatures.gct: column id\(s\) not in the file"):
        l1000.read_gct(path, cids=["c9"])


def test_gct12_text_and_bad_files_name_the_file(tmp_path):
    path = tmp_path / "x.gct"
    path.write_text("#1.2\n2\t2\nName\tDescription\ts1\ts2\ng1\tna\t1.5\t-2\ng2\tna\t0\t3\n")
    gct = l1000.read_gct(path)
    assert gct.data.to_numpy().tolist() == [[1.5, -2.0], [0.0, 3.0]]
    assert gct.col_meta.index.tolist() == ["s1", "s2"]
    bad = tmp_path / "bad.gctx"
    bad.write_text("#2.0\n1\t1\n")
    with pytest.raises(SchemaError, match=r"bad.gctx: line 1 is '#2.0'"):
        l1000.read_gct(bad)
    short = tmp_path / "short.gct"
    short.write_text("#1.3\n2\t1\t0\t0\nid\ts1\ng1\t1\n")
    with pytest.raises(SchemaError, match="short.gct: expected 0 column-field lines and 2 data"):
        l1000.read_gct(short)


def test_simulated_gctx_cmap_tas_equals_file_tas(world):
    gct = l1000.read_gct(world / "l1000.gctx")
    rows, symbols = l1000.landmark_rows(gct)
    assert len(rows) == 80
    z = gct.data.to_numpy()[rows].T
    tas = l1000.transcriptional_activity(z, gct.col_meta, "cmap")
    np.testing.assert_allclose(tas, gct.col_meta["tas"].to_numpy(), rtol=1e-6)


# ----------------------------------------------------------------------------------------- TAS
def test_tas_hand_values():
    z = np.array([[1.0, -3.0], [0.0, 2.0]])
    np.testing.assert_allclose(l1000.transcriptional_activity(z), [2.0, 1.0])
    meta = pd.DataFrame({"distil_ss": [1, 2], "distil_cc_q75": [0.25, -0.1]})
    np.testing.assert_allclose(
        l1000.transcriptional_activity(z, meta, "cmap"), [math.sqrt(1 * 0.25 / 2), 0.0]
    )
    with pytest.raises(SchemaError, match="f.gct: column field 'distil_ss' is missing"):
        l1000.transcriptional_activity(z, meta.drop(columns="distil_ss"), "cmap", "f.gct")


def _hand_gct() -> l1000.Gct:
    # (name, cell, activity t): landmark values (t, -t) -> TAS t; the non-landmark row is 100
    sigs = [
        ("aspirin", "L1", 5.0),
        ("aspirin", "L1", 4.0),
        ("aspirin", "L2", 1.0),
        ("ASPIRIN", "L3", 2.0),
        ("Ibu", "L1", 3.0),
        ("Ibu", "L1", 2.5),
        ("Ibu", "L2", 0.5),
        ("DMSO", "L1", 9.0),
        ("unknown", "L1", 9.0),
        ("Ibu", "L3", 20.0),
    ]
    ids = [f"s{i}" for i in range(len(sigs))]
    data = pd.DataFrame(
        [[t for *_, t in sigs], [-t for *_, t in sigs], [100.0] * len(sigs)],
        index=["r1", "r2", "r3"],
        columns=ids,
        dtype=np.float32,
    )
    rows = pd.DataFrame(
        {"pr_gene_symbol": ["G1", "G2", "G3"], "pr_is_lmark": [1, 1, 0]}, index=data.index
    )
    types = ["trt_cp"] * len(sigs)
    types[7] = "ctl_vehicle"
    cols = pd.DataFrame(
        {
            "pert_iname": [n for n, *_ in sigs],
            "cell_id": [c for _, c, _ in sigs],
            "pert_dose": 1.0,
            "pert_type": types,
        },
        index=ids,
    )
    return l1000.Gct(data, rows, cols)


def test_select_views_top_tas_one_per_cell_line_first():
    views = l1000.select_views(_hand_gct(), ["Aspirin", "Ibu", "DMSO"], k=3, clip_z=10.0)
    assert views.landmarks == ["G1", "G2"] and views.x.shape == (6, 2)
    # Aspirin: best per line by TAS: L1 5, L3 2, L2 1 (L1's 4 comes after the other lines)
    # Ibu: L3 20 (clipped to 10 in x, TAS 20), L1 3, L2 0.5; DMSO is a control; 'unknown' no drug
    assert views.drug.tolist() == ["Aspirin"] * 3 + ["Ibu"] * 3
    assert views.meta["tas"].tolist() == [5.0, 2.0, 1.0, 20.0, 3.0, 0.5]
    assert views.meta["cell_id"].tolist() == ["L1", "L3", "L2", "L3", "L1", "L2"]
    np.testing.assert_allclose(views.tas, np.array([5, 2, 1, 20, 3, 0.5]) / 20)
    assert views.x[3].tolist() == [10.0, -10.0]
    two = l1000.select_views(_hand_gct(), ["Ibu"], k=4)
    assert two.meta["tas"].tolist() == [20.0, 3.0, 0.5, 2.5]  # then the next highest


# --------------------------------------------------------------------------- soft labels, losses
def _five_views(r: float):
    # views: s0, e0a, e0b (drug 0); s1, e1a (drug 1)
    drug = np.array([0, 0, 0, 1, 1])
    is_struct = np.array([True, False, False, True, False])
    tas = np.array([np.nan, 0.64, 0.25, np.nan, 1.0])
    pearson = np.zeros((5, 5))
    pearson[1, 2] = pearson[2, 1] = r
    bio = np.where(drug[:, None] == drug[None, :], 1.0, 0.9)
    return drug, is_struct, tas, pearson, bio


def test_soft_labels_hand_computed():
    m = mdt.soft_labels(*_five_views(0.5), eps=0.05, delta=0.86)
    # same drug: structure pairs r = 1, TAS_struct = 1 -> sqrt(TAS); e0a-e0b: 0.5 * sqrt(.64 * .25)
    # = 0.2; cross drug: max(0, 0.9 - 0.86) = 0.04
    raw = np.array(
        [
            [0, 0.8, 0.5, 0.04, 0.04],
            [0.8, 0, 0.2, 0.04, 0.04],
            [0.5, 0.2, 0, 0.04, 0.04],
            [0.04, 0.04, 0.04, 0, 1.0],
            [0.04, 0.04, 0.04, 1.0, 0],
        ]
    )
    np.testing.assert_allclose(m, raw / raw.sum(axis=1, keepdims=True))
    floor = mdt.soft_labels(*_five_views(-0.3), eps=0.05, delta=0.86)
    assert floor[1, 2] == pytest.approx(0.05 * 0.4 / (0.8 + 0.02 + 0.08))
    # below the bio threshold and alone: an all-zero row
    drug, is_struct, tas, pearson, bio = _five_views(0.5)
    alone = mdt.soft_labels(
        drug[3:4], is_struct[3:4], tas[3:4], pearson[3:4, 3:4], bio[3:4, 3:4], 0.05, 0.86
    )
    assert alone.tolist() == [[0.0]]


def test_soft_contrastive_loss_hand_computed():
    z = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    scale = np.array([2.0, 1.0, 1.0])
    m = np.array([[0, 0.25, 0.75], [0, 0, 0], [1.0, 0, 0]])  # view 1 has no positive -> not in P
    expected = 0.0
    for i in (0, 2):
        logits = {k: scale[i] * z[i] @ z[k] for k in range(3) if k != i}
        log_norm = math.log(sum(math.exp(v) for v in logits.values()))
        expected -= sum(m[i, j] * (logits[j] - log_norm) for j in logits)
    expected /= 2
    loss = mdt.soft_contrastive_loss(torch.tensor(z), torch.tensor(scale), torch.tensor(m))
    assert loss.item() == pytest.approx(expected, rel=1e-9)


def test_distillation_and_retrieval_hand_values():
    projected = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    target = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    assert mdt.distillation_loss(projected, target).item() == pytest.approx(0.5)
    assert [mdt.top_percent_k(n) for n in (1, 100, 101, 250)] == [1, 1, 2, 3]
    z_struct = np.eye(3)
    # views 0, 1 of drug 0; view 2 of drug 1 (closest to drug 2's structure); view 3 of drug 2
    z_expr = np.array([[1, 0, 0], [0.9, 0.1, 0], [0, 0.05, 0.9], [0, 0, 1.0]])
    score = mdt.retrieval_score(z_struct, z_expr, np.array([0, 0, 1, 2]))
    # e2s: views 0, 1, 3 hit (3/4); s2e: drugs 0 and 2 find an own view first, drug 1 not (2/3)
    assert score == pytest.approx({"e2s": 0.75, "s2e": 2 / 3, "score": (0.75 + 4 / 3) / 3})


# ----------------------------------------------------------------------------------- presets
def _linear_shapes(module: nn.Module) -> list[tuple[int, int]]:
    return [(m.in_features, m.out_features) for m in module.modules() if isinstance(m, nn.Linear)]


def test_paper_preset_equals_table5():
    # StateXDiff Table 5 (MDT pretraining hyperparameters):
    #   Structure features 512 (UniMol 3D embedding); Gene features 978 (L1000 landmark genes)
    #   Struct encoder 3-layer MLP 512->1024->512->512; Expr encoder 3-layer MLP 978->1024->512->512
    #   Shared embedding dim 512 (L2-normalized output); Projection head 2-layer MLP 512->256->256
    #   Gene decoder 2-layer MLP 512->1024->978; Activation / norm GELU / LayerNorm per layer
    #   Dropout 0.223 (all encoders); eps (same-drug floor) 0.05; delta (cross-drug threshold) 0.86
    #   Views per drug (k) 3; Temperature init (tau_struct, tau_expr) 1/0.07 ~ 14.3, learnable
    #   alpha (L_distill) 0.014; distillation target 256d; Optimizer AdamW beta1=0.9, beta2=0.999
    #   Learning rate 5.48e-4; Weight decay 1e-4; Cosine warmup, 8-epoch linear warmup;
    #   Gradient clipping 5.0; Batch size 512 drugs; Epochs 240, early stop patience 50
    # A.3.4: validation every 5 epochs, bfloat16; Table 6: drug tokens K_d = 35.
    p = mdt.PRESETS["paper"]
    assert [p["fingerprint_bits"], *p["struct_layers"]] == [512, 1024, 512, 512]
    assert [978, *p["expr_layers"]] == [978, 1024, 512, 512]
    assert [p["struct_layers"][-1], *p["projection_layers"]] == [512, 256, 256]
    assert [512, *p["decoder_layers"], 978] == [512, 1024, 978]
    assert (p["dropout"], p["eps"], p["delta"], p["views_per_drug"]) == (0.223, 0.05, 0.86, 3)
    assert (
        p["temperature_init"] == pytest.approx(1 / 0.07) and round(p["temperature_init"], 1) == 14.3
    )
    assert p["distill_weight"] == 0.014
    assert (p["lr"], p["betas"], p["weight_decay"]) == (5.48e-4, [0.9, 0.999], 1e-4)
    assert (p["warmup_epochs"], p["grad_clip"], p["batch_drugs"]) == (8, 5.0, 512)
    assert (p["epochs"], p["patience"], p["eval_every"], p["precision"]) == (240, 50, 5, "bf16")
    assert p["n_tokens"] == 35
    model = mdt.MDT(512, 978, 256, p)
    assert _linear_shapes(model.struct_encoder) == [(512, 1024), (1024, 512), (512, 512)]
    assert _linear_shapes(model.expr_encoder) == [(978, 1024), (1024, 512), (512, 512)]
    assert _linear_shapes(model.projection) == [(512, 256), (256, 256)]
    assert _linear_shapes(model.decoder) == [(512, 1024), (1024, 978)]
    kinds = [type(m).__name__ for m in model.struct_encoder]
    assert kinds == ["Linear", "LayerNorm", "GELU", "Dropout"] * 2 + ["Linear"]
    assert {m.p for m in model.modules() if isinstance(m, nn.Dropout)} == {0.223}
    assert model.scales()["struct"].item() == pytest.approx(1 / 0.07, rel=1e-6)
    assert model.tokens(torch.zeros(2, 512)).shape == (2, 35, 512)
    with pytest.raises(ValueError, match="projection_layers: last width 256 must equal .* 128"):
        mdt.MDT(512, 978, 128, p)


# ------------------------------------------------------------------------------ data, training
def _world_inputs(world: Path, params: dict):
    drugs = read_drug_table(world / "drugs.tsv")
    structure = structure_embedding(drugs["smiles"].to_dict(), n_bits=params["fingerprint_bits"])
    gct = l1000.read_gct(world / "l1000.gctx")
    views = l1000.select_views(gct, list(drugs.index), params["views_per_drug"])
    rng = np.random.default_rng(0)
    bio = pd.DataFrame(rng.normal(size=(len(drugs), 64)), index=drugs.index)
    bio = bio.div(np.linalg.norm(bio, axis=1), axis=0)
    return drugs, structure, gct, views, bio


def test_test_drugs_include_combination_components():
    split = pd.DataFrame(
        {
            "drug": ["A", "B", "A+C", "D+E", "control", "F"],
            "split": ["train", "test", "test", "exclude", "train", "val"],
        }
    )
    assert sources.held_out_drugs(split) == {"B", "A", "C"}


def test_excluded_drugs_never_reach_training(world):
    torch.set_num_threads(1)
    params = mdt.resolve_params("tiny", {"epochs": 15, "eval_every": 5})
    drugs, structure, gct, views, bio = _world_inputs(world, params)
    held = set(drugs.index[drugs["in_single_cell"] == "true"][:3])
    data = mdt.prepare_data(structure, bio, views, held, params)
    assert not set(np.asarray(data.drugs)[data.train | data.val]) & held
    assert set(np.asarray(data.drugs)[data.excluded]) == held
    assert not set(data.views.drug) & held and len(data.views.x) < len(views.x)
    assert set(data.held_out_views.drug) == held and len(data.held_out_views.x) == 3 * len(held)
    model = mdt.train_mdt(data, params)[0]
    first = mdt.drug_templates(model, data.structure, *mdt.template_views(data))
    # the held-out drugs' signatures replaced by strong noise whose TAS exceeds every other
    # view's (select_views then rescales all TAS by it): training and every other drug's outputs
    # stay identical; only the held-out templates, fused with their own views, change
    noisy = l1000.Gct(gct.data.copy(), gct.row_meta, gct.col_meta)
    columns = gct.col_meta.index[gct.col_meta["pert_iname"].isin(held)]
    noise = np.random.default_rng(5).normal(0.0, 8.0, (len(gct.data), len(columns)))
    noisy.data.loc[:, columns] = noise.astype(np.float32)
    views2 = l1000.select_views(noisy, list(drugs.index), params["views_per_drug"])
    others = ~np.isin(views2.drug, list(held))
    assert (views2.tas[others] < views.tas[~np.isin(views.drug, list(held))]).all()
    data2 = mdt.prepare_data(structure, bio, views2, held, params)
    np.testing.assert_array_equal(data2.views.tas, data.views.tas)
    model2 = mdt.train_mdt(data2, params)[0]
    state, state2 = model.state_dict(), model2.state_dict()
    assert all(torch.equal(state[k], state2[k]) for k in state)
    second = mdt.drug_templates(model2, data2.structure, *mdt.template_views(data2))
    kept = ~data.excluded
    for name in ("z_struct", "z_drug", "tokens", "e_drug", "response"):
        np.testing.assert_array_equal(getattr(first, name)[kept], getattr(second, name)[kept])
    np.testing.assert_array_equal(first.z_struct, second.z_struct)
    assert (np.abs(first.z_drug[~kept] - second.z_drug[~kept]).max(axis=1) > 0.05).all()


def test_fuse_views_hand_values():
    z_s = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    z_e = torch.tensor([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    fused = mdt.fuse_views(z_s, z_e, torch.tensor([0.5, 0.25, 1.0]), torch.tensor([0, 0, 1]))
    # drug 0: (1, 0) + 0.5 (0, 1) + 0.25 (0, 1) = (1, 0.75) -> (0.8, 0.6); drug 1: (1, 1) / sqrt 2;
    # drug 2 has no view: z_s
    expected = [[0.8, 0.6], [2**-0.5, 2**-0.5], [0.6, 0.8]]
    np.testing.assert_allclose(fused.numpy(), expected, rtol=1e-6)
    np.testing.assert_array_equal(z_s.numpy()[0], [1.0, 0.0])  # inputs untouched


def test_held_out_views_recover_the_moa_where_structure_misleads(world):
    # the world's single-cell drugs whose MoA is not their scaffold group's, all held out: their
    # structural neighbours among the training drugs have another MoA, their L1000 views do not
    # (one of the four, 2-Methoxyestradiol, has views closest to another MoA's even before MDT)
    torch.set_num_threads(1)
    params = mdt.resolve_params("tiny")
    drugs, structure, gct, views, bio = _world_inputs(world, params)
    cliffs = drugs.index[(drugs["moa"] != drugs["scaffold"]) & (drugs["in_single_cell"] == "true")]
    assert len(cliffs) == 4
    data = mdt.prepare_data(structure, bio, views, set(cliffs), params)
    out = mdt.drug_templates(
        mdt.train_mdt(data, params)[0], data.structure, *mdt.template_views(data)
    )
    names = np.asarray(data.drugs)
    pool = names[data.train | data.val]
    moa = drugs["moa"].to_dict()

    def top1(values: np.ndarray) -> float:
        frame = pd.DataFrame(values @ values.T, index=names, columns=names)
        return evaluate.moa_precision(frame.loc[list(cliffs), pool], moa, 1)

    tanimoto = evaluate.tanimoto_matrix(evaluate.morgan_fingerprints(drugs["smiles"].to_dict()))
    morgan = evaluate.moa_precision(tanimoto.loc[list(cliffs), pool], moa, 1)
    assert top1(out.z_struct) <= 0.25 and morgan <= 0.25
    assert top1(out.z_drug) >= max(top1(out.z_struct), morgan) + 0.5


def test_short_training_beats_random_on_held_out_drugs(world):
    torch.set_num_threads(1)
    params = mdt.resolve_params("tiny", {"epochs": 60, "patience": 60})
    drugs, structure, gct, views, bio = _world_inputs(world, params)
    # one held-out drug per MoA, among drugs whose structure tracks their MoA: for an activity
    # cliff (moa != scaffold) structure points to another mechanism by design, and two drugs of
    # one MoA cannot be told apart by their mechanism (cliffs: test_held_out_views_recover_the_moa_*)
    consistent = drugs[drugs["moa"] == drugs["scaffold"]]
    held = set(consistent.groupby("moa").head(1).index)
    data = mdt.prepare_data(structure, bio, views, held, params)
    model, history = mdt.train_mdt(data, params)
    untrained = mdt.train_mdt(data, {**params, "epochs": 0})[0]
    # cross-modal retrieval (Eq. 27) among the held-out drugs, whose views MDT never saw
    all_views = l1000.select_views(gct, sorted(held), params["views_per_drug"])
    pos = {d: i for i, d in enumerate(sorted(held))}
    structure_held = torch.as_tensor(structure.loc[sorted(held)].to_numpy(np.float32))

    def score(m):
        with torch.no_grad():
            z_s = m.encode_structure(structure_held).numpy()
            z_e = m.encode_expression(torch.as_tensor(all_views.x)).numpy()
        return mdt.retrieval_score(z_s, z_e, np.array([pos[d] for d in all_views.drug]))

    trained, before = score(model), score(untrained)
    chance = 1 / len(held)
    assert trained["score"] > max(2 * chance, before["score"] + 0.2)
    assert history["contrast"].iloc[-5:].mean() < history["contrast"].iloc[:5].mean()


def test_rule_functions_write_the_documented_outputs(world, tmp_path):
    torch.set_num_threads(1)
    split = pd.DataFrame(
        {
            "condition": ["x", "y", "z"],
            "drug": ["control", "", ""],
            "split": ["train", "test", "train"],
        }
    )
    drugs = read_drug_table(world / "drugs.tsv")
    single = drugs.index[drugs["in_single_cell"] == "true"].tolist()
    split.loc[1, "drug"], split.loc[2, "drug"] = f"{single[0]}+{single[1]}", single[2]
    split.to_csv(tmp_path / "split.tsv", sep="\t", index=False)
    gct = l1000.read_gct(world / "l1000.gctx")
    symbols = gct.row_meta["pr_gene_symbol"].tolist()
    pd.DataFrame({"gene": ["NOTALANDMARK", symbols[5], symbols[0]]}).to_csv(
        tmp_path / "genes.tsv", sep="\t", index=False
    )
    steps.pretrain_graph(
        world / "drugs.tsv",
        world / "dti.tsv",
        world / "ppi.tsv",
        tmp_path / "graph",
        {"preset": "tiny", "params": {"epochs": 20}},
        gene_sets_path=world / "gene_sets.gmt",
        device="cpu",
    )
    steps.pretrain_mdt(
        world / "drugs.tsv",
        tmp_path / "split.tsv",
        tmp_path / "genes.tsv",
        world / "l1000.gctx",
        tmp_path / "graph",
        tmp_path / "mdt",
        {"preset": "tiny", "params": {"epochs": 10}},
        device="cpu",
    )
    # each prior is one folder holding the files scpert.priors.outputs names, and nothing else
    assert sorted(p.name for p in (tmp_path / "graph").iterdir()) == sorted(
        [outputs.GRAPH_EMBEDDINGS, outputs.GRAPH_METRICS]
    )
    assert sorted(p.name for p in (tmp_path / "mdt").iterdir()) == sorted(
        [outputs.MDT_TOKENS, outputs.MDT_MODEL, outputs.MDT_HISTORY]
    )
    out = outputs.load_drug_tokens(tmp_path / "mdt" / outputs.MDT_TOKENS)
    n = len(drugs)
    assert out["drug"].tolist() == drugs.index.tolist()
    assert out["tokens"].shape == (n, 35, 64) and out["e_drug"].shape == (n, 64)
    assert out["z_struct"].shape == (n, 64) and out["response"].shape == (n, 80)
    role = dict(zip(out["drug"], out["role"]))
    assert {d for d, r in role.items() if r == "held_out"} == {single[0], single[1]}
    assert role[single[2]] in ("train", "val")
    assert out["in_single_cell"].sum() == 3 and set(out["role"]) <= set(outputs.ROLES)
    assert (out["n_views"] == 3).all()  # held-out drugs too: their L1000 views are fused
    assert out["z_drug"].shape == (n, 64)
    np.testing.assert_allclose(np.linalg.norm(out["z_drug"], axis=1), 1.0, rtol=1e-5)
    assert (np.sum(out["z_drug"] * out["z_struct"], axis=1) < 1 - 1e-4).all()
    index = dict(zip(out["landmarks"], out["landmark_gene_index"]))
    assert index[symbols[0]] == 2 and index[symbols[5]] == 1
    assert (out["landmark_gene_index"] >= 0).sum() == 2
    reloaded = mdt.load_mdt(tmp_path / "mdt" / outputs.MDT_MODEL)
    with torch.no_grad():
        z = reloaded.encode_structure(
            torch.as_tensor(structure_embedding(drugs["smiles"].to_dict()).to_numpy(np.float32))
        )
    np.testing.assert_allclose(z.numpy(), out["z_struct"], atol=1e-6)
    steps.evaluate_priors(
        world / "drugs.tsv", tmp_path / "mdt", tmp_path / "graph", tmp_path / "eval.tsv", "w", "s"
    )
    table = pd.read_csv(tmp_path / "eval.tsv", sep="\t")
    embeddings = ["graph", "mdt", "mdt_e_drug", "mdt_struct", "morgan", "random"]
    assert table.groupby("metric")["embedding"].apply(sorted).to_dict() == {
        "dti_auroc": ["graph"],
        **{
            m: embeddings
            for m in ("moa_top1", "moa_top5", "moa_top1_mismatch", "moa_top5_mismatch")
        },
    }
    n = table.set_index("metric")["n"]
    assert (n[["moa_top1", "moa_top5"]] == 2).all()
    mismatched = (drugs.loc[single[:2], "moa"] != drugs.loc[single[:2], "scaffold"]).sum()
    assert mismatched == 1 and (n[["moa_top1_mismatch", "moa_top5_mismatch"]] == 1).all()
    assert table["value"].between(0, 1).all()


def test_moa_precision_hand_value():
    sim = pd.DataFrame(
        [[0.9, 0.8, 0.1], [0.1, 0.2, 0.3]], index=["q1", "q2"], columns=["a", "b", "c"]
    )
    moa = {"q1": "X", "q2": "Y", "a": "X", "b": "Y", "c": "Y"}
    assert evaluate.moa_precision(sim, moa, 1) == pytest.approx((1 + 1) / 2)
    assert evaluate.moa_precision(sim, moa, 2) == pytest.approx((0.5 + 1) / 2)
