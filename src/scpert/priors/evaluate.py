"""Rule evaluate_priors: the acceptance numbers of the drug priors on one split.

MoA retrieval of held-out drugs: for each held-out drug (a drug of the split's test
conditions) with a MoA, the fraction of its k nearest training drugs (MDT ``train`` and ``val``
drugs with a MoA) that share its MoA, averaged over held-out drugs (precision at k = 1, 5);
neighbours by cosine of the MDT template embedding z_drug (``mdt``: structure fused with the
drug's L1000 views, :mod:`scpert.priors.mdt`), of the structure embedding z_s alone
(``mdt_struct``), of e_drug (``mdt_e_drug``), by Tanimoto of the raw Morgan fingerprints
(``morgan``), by cosine of the graph prior z_b (``graph``; built from DTI, not structure), and
the expectation of a random ranking (``random``). When the drug table has a ``scaffold`` column
(the synthetic world's structural group), the same metrics over the held-out drugs whose MoA
differs from their scaffold group (``moa_top{k}_mismatch``): where structural neighbours mislead.
DTI AUROC: the graph prior's held-out DTI pairs against random non-target genes (from
``graph_metrics.tsv``). Table layout: :mod:`scpert.priors.outputs`.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from scpert import runtime
from scpert.chem import morgan_fingerprints, tanimoto_matrix
from scpert.data.io import read_drug_table
from scpert.priors.outputs import load_drug_tokens, read_drug_embeddings
from scpert.priors.sources import read_drugs

log = logging.getLogger(__name__)

RETRIEVAL_K = (1, 5)


def moa_precision(sim: pd.DataFrame, moa: dict[str, str], k: int) -> float:
    """Mean over query rows of the fraction of the k most similar columns sharing the query's MoA
    (ties broken by column order)."""
    values = []
    for query, row in sim.iterrows():
        nearest = row.sort_values(ascending=False, kind="stable").index[:k]
        values.append(np.mean([moa[c] == moa[query] for c in nearest]))
    return float(np.mean(values)) if values else float("nan")


def _cosine(values: np.ndarray, index) -> pd.DataFrame:
    unit = values / np.maximum(np.linalg.norm(values, axis=1, keepdims=True), 1e-12)
    return pd.DataFrame(unit @ unit.T, index=index, columns=index)


def evaluate_priors(
    drugs_path,
    tokens_path,
    graph_path,
    graph_metrics_path,
    out_tsv,
    dataset: str,
    split: str,
    extra_drugs_path=None,
) -> None:
    """Rule evaluate_priors: the acceptance numbers of one split (module docstring)."""
    drugs = read_drugs(drugs_path, extra_drugs_path)
    drug_table = read_drug_table(drugs_path)
    scaffold = drug_table["scaffold"].to_dict() if "scaffold" in drug_table.columns else None
    tokens = load_drug_tokens(tokens_path)
    names = tokens["drug"].tolist()
    moa = {d: m for d, m in drugs["moa"].items() if m}
    role = dict(zip(names, tokens["role"]))
    queries = [d for d in names if role[d] == "held_out" and d in moa]
    pool = [d for d in names if role[d] in ("train", "val") and d in moa]
    similarity = {
        "mdt": _cosine(tokens["z_drug"], names),
        "mdt_struct": _cosine(tokens["z_struct"], names),
        "mdt_e_drug": _cosine(tokens["e_drug"], names),
        "morgan": tanimoto_matrix(
            morgan_fingerprints(drugs["smiles"].to_dict(), source=str(drugs_path))
        ),
    }
    bio = read_drug_embeddings(graph_path)
    if set(queries + pool) <= set(bio.index):
        similarity["graph"] = _cosine(bio.to_numpy(), bio.index)
    query_sets = {"": queries}
    if scaffold is not None:
        query_sets["_mismatch"] = [q for q in queries if scaffold.get(q, moa[q]) != moa[q]]
    rows = []
    for suffix, subset in query_sets.items():
        for k in RETRIEVAL_K:
            metric = f"moa_top{k}{suffix}"
            for name, sim in similarity.items():
                value = moa_precision(sim.loc[subset, pool], moa, k) if subset and pool else np.nan
                rows.append((metric, name, value, len(subset), len(pool)))
            chance = [np.mean([moa[c] == moa[q] for c in pool]) for q in subset]
            value = float(np.mean(chance)) if chance and pool else np.nan
            rows.append((metric, "random", value, len(subset), len(pool)))
    metrics = pd.read_csv(graph_metrics_path, sep="\t").set_index("metric")["value"]
    rows.append(
        (
            "dti_auroc",
            "graph",
            float(metrics["dti_auroc"]),
            int(float(metrics["edges_dti_heldout"])),
            int(float(metrics["n_genes"])),
        )
    )
    table = pd.DataFrame(rows, columns=["metric", "embedding", "value", "n", "n_candidates"])
    table.insert(0, "split", split)
    table.insert(0, "dataset", dataset)
    runtime.write_tsv(table, out_tsv)
    log.info("priors evaluation %s/%s:\n%s", dataset, split, table.to_string(index=False))
