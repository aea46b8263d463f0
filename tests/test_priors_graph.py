"""Graph prior z_b (StateXDiff App. A.3.1): readers, graph construction, losses, training and
the paper preset."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from scpert.data.schema import SchemaError
from scpert.priors import graph, outputs, sources


# ------------------------------------------------------------------------------------- readers
def test_read_string_links_maps_ids_dedupes_pairs(tmp_path):
    links = tmp_path / "9606.protein.links.v12.0.txt.gz"
    with gzip.open(links, "wt") as f:
        f.write(
            "protein1 protein2 combined_score\n"
            "9606.ENSP1 9606.ENSP2 800\n9606.ENSP2 9606.ENSP1 800\n"
            "9606.ENSP1 9606.ENSP3 650\n9606.ENSP3 9606.ENSP9 999\n9606.ENSP3 9606.ENSP3 900\n"
        )
    info = tmp_path / "9606.protein.info.v12.0.txt"
    info.write_text(
        "#string_protein_id\tpreferred_name\tprotein_size\tannotation\n"
        "9606.ENSP1\tTP53\t393\tx\n9606.ENSP2\tMDM2\t491\ty\n9606.ENSP3\tATM\t3056\tz\n"
    )
    ppi = sources.read_ppi(links, info)
    # ENSP9 has no symbol; the self pair is dropped; both directions collapse to one pair
    assert ppi.to_dict("list") == {
        "gene1": ["ATM", "MDM2"],
        "gene2": ["TP53", "TP53"],
        "score": [650.0, 800.0],
    }


def test_read_ppi_tsv_keeps_highest_score_and_names_missing_column(tmp_path):
    path = tmp_path / "ppi.tsv"
    path.write_text("gene1\tgene2\tscore\nB\tA\t300\nA\tB\t720\nC\tA\t700\n")
    ppi = sources.read_ppi(path)
    assert ppi.values.tolist() == [["A", "B", 720.0], ["A", "C", 700.0]]
    bad = tmp_path / "bad.tsv"
    bad.write_text("gene1\tgene2\nA\tB\n")
    with pytest.raises(SchemaError, match=r"bad.tsv: column 'score' is missing"):
        sources.read_ppi(bad)


def test_read_dti_dgidb_columns_default_score(tmp_path):
    path = tmp_path / "interactions.tsv"
    path.write_text(
        "gene_name\tdrug_name\tinteraction_score\n"
        "EGFR\tERLOTINIB\t2.5\nEGFR\tERLOTINIB\t4.0\nBRAF\tVEMURAFENIB\t\n\tX\t1\n"
    )
    dti = sources.read_dti(path)
    assert dti.values.tolist() == [["ERLOTINIB", "EGFR", 4.0], ["VEMURAFENIB", "BRAF", 1.0]]
    bad = tmp_path / "bad.csv"
    bad.write_text("compound,protein\na,b\n")
    with pytest.raises(SchemaError, match="bad.csv: no gene column"):
        sources.read_dti(bad)


def test_read_corum_human_complexes_and_clique_edges(tmp_path):
    path = tmp_path / "allComplexes.txt"
    path.write_text(
        "ComplexID\tComplexName\tOrganism\tsubunits(Gene name)\n"
        "1\tBCL6-HDAC4\tHuman\tBCL6;HDAC4\n"
        "2\tmouse\tMouse\tA;B;C\n"
        "3\tMCM\tHuman\tMCM2;MCM3;MCM4;MCM3\n"
    )
    complexes = sources.read_complexes(path)
    assert complexes["complex_id"].tolist() == ["1", "3"]
    assert complexes["genes"].tolist() == [["BCL6", "HDAC4"], ["MCM2", "MCM3", "MCM4"]]
    edges = sources.complex_edges(complexes)
    assert len(edges) == 1 + 3 and set(edges["score"]) == {1000.0}


def test_read_gmt(tmp_path):
    path = tmp_path / "sets.gmt"
    path.write_text("SET_A\tdesc\tG1\tG2\n\nSET_B\tdesc\tG3\n")
    assert sources.read_gmt(path) == {"SET_A": ["G1", "G2"], "SET_B": ["G3"]}


# ------------------------------------------------------------------------------- construction
def _tables():
    # d0/d1 nearly parallel (cos 0.9975), d2 orthogonal, d3 = d0 (cos 1)
    features = pd.DataFrame(
        [[1.0, 0.0, 0.0], [1.0, 0.0707, 0.0], [0.0, 1.0, 0.0], [2.0, 0.0, 0.0]],
        index=["d0", "d1", "d2", "d3"],
    )
    dti = pd.DataFrame(
        {
            "drug": ["d0", "d0", "D1", "d2", "d3", "unknown"],
            "gene": ["G1", "G2", "G1", "G3", "G4", "G1"],
            "score": [0.9, 0.2, 0.8, 1.0, 0.7, 1.0],
        }
    )
    ppi = pd.DataFrame(
        {
            "gene1": ["G1", "G2", "G3", "G5"],
            "gene2": ["G2", "G3", "G4", "G6"],
            "score": [700, 699, 950, 100],
        }
    )
    sets = {"S1": ["G1", "G2"], "S2": ["G4"]}
    return features, dti, ppi, sets


def test_graph_edge_counts_and_thresholds():
    features, dti, ppi, sets = _tables()
    params = graph.resolve_params("paper", {"dti_holdout": 0.0, "dti_min_score": 0.5})
    g = graph.build_graph(features, dti, ppi, sets, params)
    # DTI kept: score >= 0.5 and known drug -> (d0,G1), (d1,G1), (d2,G3), (d3,G4)
    # PPI >= 700: G1-G2 (700), G3-G4 (950), both directions; DDS cos > 0.995: d0-d1, d0-d3, d1-d3
    assert g.edge_pairs() == {"dti": 4, "rev_dti": 4, "ppi": 4, "dds": 6, "dti_heldout": 0}
    assert g.genes == ["G1", "G2", "G3", "G4"]
    dti_pairs = {(g.drugs[a], g.genes[b]) for a, b in g.data[graph.DTI].edge_index.T.tolist()}
    assert dti_pairs == {("d0", "G1"), ("d1", "G1"), ("d2", "G3"), ("d3", "G4")}
    assert torch.equal(g.data[graph.REV_DTI].edge_index, g.data[graph.DTI].edge_index.flip(0))
    # gene features: membership of S1, S2
    assert g.data[graph.GENE].x.tolist() == [[1, 0], [1, 0], [0, 0], [0, 1]]
    looser = graph.build_graph(
        features, dti, ppi, sets, {**params, "dds_min_cosine": 0.0, "ppi_min_score": 0}
    )
    assert looser.edge_pairs()["dds"] == 2 * 4  # cos > 0: all pairs but d0-d2 and d2-d3
    assert looser.edge_pairs()["ppi"] == 2 * 4


def test_dti_holdout_removes_pairs_from_graph():
    features, dti, ppi, sets = _tables()
    params = graph.resolve_params("tiny", {"dti_holdout": 0.4, "dti_min_score": 0.0})
    g = graph.build_graph(features, dti, ppi, sets, params)
    assert g.edge_pairs()["dti_heldout"] == 2 and g.edge_pairs()["dti"] == 5 - 2
    train = set(map(tuple, g.data[graph.DTI].edge_index.T.tolist()))
    held = set(map(tuple, g.heldout_dti.tolist()))
    assert not train & held and len(g.known_dti) == 5


# ----------------------------------------------------------------------------------- losses
def test_dti_infonce_hand_value():
    h_drug = torch.tensor([[1.0, 0.0]])
    h_gene = torch.tensor([[2.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    loss = graph.dti_infonce(h_drug, h_gene, torch.tensor([[0], [0]]), torch.tensor([[1, 2]]))
    expected = -math.log(math.exp(2) / (math.exp(2) + math.exp(0) + math.exp(-1)))
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_sce_and_edge_bce_hand_values():
    x = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    x_hat = torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    expected = ((1 - 1 / math.sqrt(2)) ** 2 + 0.0) / 2
    assert graph.sce_loss(x, x_hat, 2.0).item() == pytest.approx(expected, rel=1e-6)
    assert graph.sce_loss(x, x_hat, 1.0).item() == pytest.approx((1 - 1 / math.sqrt(2)) / 2)
    h = torch.tensor([[1.0, 1.0], [1.0, 0.0], [-1.0, 0.0]])
    loss = graph.edge_bce(h, h, torch.tensor([[0], [1]]), torch.tensor([[2], [0]]))
    # logits: edge 0-1 -> 1, non-edge 2-0 -> -1; BCE = mean(log(1 + e^-1), log(1 + e^-1))
    assert loss.item() == pytest.approx(math.log1p(math.exp(-1)), rel=1e-6)


def test_auroc_matches_sklearn_with_ties():
    assert graph.auroc(np.array([3.0, 1.0]), np.array([2.0, 0.0])) == 0.75
    rng = np.random.default_rng(0)
    pos, neg = rng.integers(0, 5, 30).astype(float), rng.integers(0, 4, 50).astype(float)
    labels = np.r_[np.ones(30), np.zeros(50)]
    assert graph.auroc(pos, neg) == pytest.approx(roc_auc_score(labels, np.r_[pos, neg]))


# --------------------------------------------------------------------------------- training
def _world_graph(world: Path, params: dict):
    from scpert.chem import structure_embedding
    from scpert.data.io import read_drug_table

    drugs = read_drug_table(world / "drugs.tsv")
    features = structure_embedding(drugs["smiles"].to_dict(), n_bits=params["fingerprint_bits"])
    ppi = pd.concat(
        [
            sources.read_ppi(world / "ppi.tsv"),
            sources.complex_edges(sources.read_complexes(world / "complexes.tsv")),
        ]
    )
    return drugs, graph.build_graph(
        features,
        sources.read_dti(world / "dti.tsv"),
        ppi,
        sources.read_gmt(world / "gene_sets.gmt"),
        params,
    )


def test_training_ranks_heldout_dti_and_is_deterministic(world, tmp_path):
    torch.set_num_threads(1)
    params = graph.resolve_params("tiny", {"dti_holdout": 0.2})
    drugs, g = _world_graph(world, params)
    untrained = graph.dti_auroc(
        graph.encode(graph.train_graph(g, {**params, "epochs": 0})[0], g), g, params
    )
    model, history = graph.train_graph(g, params)
    h = graph.encode(model, g)
    auroc = graph.dti_auroc(h, g, params)
    assert len(g.heldout_dti) >= 8
    assert auroc > 0.8 and auroc > untrained + 0.2
    assert history["loss"].iloc[-10:].mean() < history["loss"].iloc[:10].mean()
    # z_b: unit rows, written and read back unchanged
    z = graph.drug_embeddings(h, g)
    np.testing.assert_allclose(np.linalg.norm(z.to_numpy(), axis=1), 1.0, rtol=1e-5)
    outputs.write_drug_embeddings(z, tmp_path / "z.parquet")
    pd.testing.assert_frame_equal(outputs.read_drug_embeddings(tmp_path / "z.parquet"), z)
    # same seed -> identical embeddings, also with two threads (deterministic kernels on CPU)
    torch.set_num_threads(2)
    short = {**params, "epochs": 30}
    first, second = (
        graph.drug_embeddings(graph.encode(graph.train_graph(g, short)[0], g), g) for _ in range(2)
    )
    torch.set_num_threads(1)
    np.testing.assert_array_equal(first.to_numpy(), second.to_numpy())


def test_unknown_param_and_preset_name_the_config_key():
    with pytest.raises(ValueError, match=r"priors.graph.params.hiden: unknown parameter"):
        graph.resolve_params("tiny", {"hiden": 3})
    with pytest.raises(ValueError, match="priors.graph.preset: unknown preset 'huge'"):
        graph.resolve_params("huge")


def test_paper_preset_equals_table5_hg_pretrain():
    # StateXDiff Table 5, "HG Pretrain" rows (and App. A.3.1):
    #   GNN architecture           HeteroSAGE   R-GCN style, scatter-mean
    #   GNN layers / hidden dim    2 / 256      Output: 256d per drug
    #   Edge types                 DTI, PPI, DDS   PPI>=700, DDS>=0.995
    #   HetMAE mask rate           0.3          SCE loss (alpha=2.0)
    #   Loss weights (DTI/feat/edge) 1.0/1.0/0.5
    #   Epochs / LR                200 / 1e-3   Adam optimizer
    # and "Structure features 512 (UniMol 3D embedding)" for the drug-node input width.
    p = graph.PRESETS["paper"]
    assert p["aggr"] == "mean"
    assert (p["n_layers"], p["hidden"]) == (2, 256)
    assert (p["ppi_min_score"], p["dds_min_cosine"]) == (700, 0.995)
    assert (p["mask_rate"], p["sce_alpha"]) == (0.3, 2.0)
    assert (p["w_dti"], p["w_mae"], p["w_er"]) == (1.0, 1.0, 0.5)
    assert (p["epochs"], p["lr"]) == (200, 1e-3)
    assert p["fingerprint_bits"] == 512
    assert set(graph.RELATIONS) == {
        ("drug", "dti", "gene"),
        ("gene", "rev_dti", "drug"),
        ("gene", "ppi", "gene"),
        ("drug", "dds", "drug"),
    }
    model = graph.HeteroSAGE({"drug": 512, "gene": 50}, p["hidden"], p["n_layers"], p["aggr"])
    assert len(model.convs) == 2
    conv = model.convs[0].convs[graph.DTI]
    assert conv.aggr == "mean" and conv.out_channels == 256
