"""In-silico screening case study (StateXDiff arXiv:2605.16104 Fig. 6): every drug predicted on a
held-out cell line is scored on one pathway against the line's controls, the drugs are ranked by
that score, and each mechanism of action (MoA) is tested for enrichment among the top-ranked drugs.

- Pathway score of a drug: ``mean_{g in pathway} (mean(x_g | drug) - mean(x_g | controls))`` on
  log-normalised expression, at the drug's highest dose on the line (single drugs only). The
  same score of the observed cells is the screen the predictions should reproduce.
- Ranking: by score, descending (``direction: up``) or ascending (``down``); ties by drug name.
- Screened drugs: every drug of the drug table (on the synthetic world: its whole L1000 panel, the
  single-cell drugs and the L1000-only ones), predicted by a structure-aware method on the held-out
  line from the line's control cells at one dose (:func:`screen_conditions`), the unseen chemicals
  featurised at prediction time (:meth:`scpert.methods.base.Method.add_perturbations`).
- Observed screens: the line's observed cells exist only for the single-cell drugs
  (``observed``); every drug of the panel has L1000 consensus signatures on the world's L1000
  lines (other lines of the same lineages), scored as the mean consensus z over the pathway's
  landmark genes at the screen dose, averaged over the L1000 lines (``l1000``,
  :func:`l1000_scores`). Each source is correlated with both over the drugs they share.
- Enrichment: per MoA, the one-sided hypergeometric p-value of at least ``k`` of its ``K`` drugs
  among the top ``n`` of ``N`` ranked drugs, ``P(X >= k) = hypergeom(N, K, n).sf(k - 1)``
  (``scipy.stats.hypergeom``), Benjamini-Hochberg across the MoAs
  (:func:`scpert.metrics.de.bh_fdr`, statsmodels ``fdr_bh``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from scpert.metrics.de import bh_fdr

DIRECTIONS = ("up", "down")


def pathway_scores(
    x: np.ndarray, drugs: Sequence[str], control_mean: np.ndarray, genes: np.ndarray
) -> pd.Series:
    """Per drug (rows of ``x`` labelled by ``drugs``): the mean over ``genes`` (column indices) of
    its cells' mean minus ``control_mean``. Index: drug, sorted."""
    x = np.asarray(x, dtype=np.float64)[:, genes]
    delta = x - np.asarray(control_mean, dtype=np.float64)[genes]
    frame = pd.DataFrame(delta).groupby(np.asarray(drugs, dtype=str)).mean()
    return frame.mean(axis=1).rename("score").sort_index()


def rank_drugs(scores: pd.Series, direction: str = "up") -> pd.DataFrame:
    """Drugs ranked by score (1 = strongest in ``direction``), ties by drug name."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
    table = scores.rename("score").rename_axis("drug").reset_index()
    key = -table["score"] if direction == "up" else table["score"]
    order = np.lexsort((table["drug"].to_numpy(), key.to_numpy()))
    table = table.iloc[order].reset_index(drop=True)
    table["rank"] = np.arange(1, len(table) + 1)
    return table


def moa_enrichment(ranked: pd.DataFrame, moa: pd.Series, top_n: int) -> pd.DataFrame:
    """Hypergeometric enrichment of each MoA among the first ``top_n`` rows of ``ranked`` (drug
    column), BH across MoAs. moa: drug -> MoA ("" = unknown; those drugs count in N only)."""
    drugs = ranked["drug"].astype(str).to_numpy()
    if not 0 < top_n <= len(drugs):
        raise ValueError(f"top_n must be in 1..{len(drugs)} (ranked drugs), got {top_n}")
    labels = moa.reindex(drugs).fillna("").astype(str).to_numpy()
    top = labels[:top_n]
    rows = []
    for name in sorted(set(labels) - {""}):
        K = int((labels == name).sum())
        k = int((top == name).sum())
        p = float(stats.hypergeom(len(drugs), K, top_n).sf(k - 1))
        rows.append((name, k, K, top_n, len(drugs), p))
    table = pd.DataFrame(rows, columns=["moa", "k", "K", "n", "N", "p"])
    table["fdr"] = bh_fdr(table["p"].to_numpy())
    return table.sort_values(["p", "moa"], kind="stable").reset_index(drop=True)


def highest_dose_rows(obs: pd.DataFrame, line: str, control: str) -> np.ndarray:
    """Rows of single-drug cells of ``line`` at each drug's highest dose on that line."""
    drug = obs["drug"].astype(str)
    single = (obs["cell_line"].astype(str) == line) & (drug != control) & ~drug.str.contains(r"\+")
    dose = pd.to_numeric(obs["dose"].astype(str), errors="coerce")
    top = dose[single].groupby(drug[single]).transform("max")
    keep = pd.Series(False, index=obs.index)
    keep[single] = (dose[single] == top).to_numpy()
    return np.flatnonzero(keep.to_numpy())


def screen_conditions(
    drugs: Sequence[str], line: str, dose: str, n_cells: int, plate: str | None = None
) -> pd.DataFrame:
    """The condition table of a screen (:data:`scpert.methods.base.CONDITION_COLUMNS`, plus
    ``plate`` when given): one row per drug (sorted, duplicates dropped) on ``line`` at ``dose``,
    ``n_cells`` each; conditions are named ``line|drug|dose`` as in ``processed.h5ad``."""
    if n_cells < 1:
        raise ValueError(f"cells_per_drug must be >= 1, got {n_cells}")
    names = sorted(set(map(str, drugs)))
    if not names:
        raise ValueError("no drugs to screen")
    table = pd.DataFrame(
        {
            "condition": [f"{line}|{d}|{dose}" for d in names],
            "cell_line": line,
            "drug": names,
            "dose": str(dose),
        }
    )
    if plate is not None:
        table["plate"] = str(plate)
    table["n_cells"] = int(n_cells)
    return table


def l1000_scores(signatures, genes: Sequence[str], dose: float) -> pd.Series:
    """Per drug: the mean over ``genes`` (symbols; those among the landmarks) of its consensus
    z-scores at ``dose`` (``pert_dose``), averaged over the L1000 cell lines. ``signatures``:
    :func:`scpert.data.sources.lincs.read_l1000` (treatments ``pert_type`` ``trt_cp``)."""
    obs = signatures.obs
    treated = (obs["pert_type"].astype(str) == "trt_cp").to_numpy()
    at_dose = np.isclose(pd.to_numeric(obs["pert_dose"], errors="coerce"), float(dose))
    rows = np.flatnonzero(treated & at_dose)
    cols = [i for i, g in enumerate(map(str, signatures.var_names)) if g in set(genes)]
    if rows.size == 0 or not cols:
        raise ValueError(
            f"L1000: no treated signature at dose {dose} or no pathway landmark gene "
            f"({rows.size} signatures, {len(cols)} genes)"
        )
    x = np.asarray(signatures.X[rows][:, cols], dtype=np.float64).mean(axis=1)
    frame = pd.DataFrame(
        {
            "drug": obs["pert_iname"].astype(str).to_numpy()[rows],
            "line": obs["cell_id"].to_numpy()[rows],
            "z": x,
        }
    )
    per_line = frame.groupby(["drug", "line"])["z"].mean()
    return per_line.groupby(level="drug").mean().rename("score").sort_index()


def screen(
    sources: dict,
    control_mean: np.ndarray,
    genes: np.ndarray,
    moa: pd.Series,
    line: str,
    control: str,
    direction: str,
    top_n: int,
    scores: dict | None = None,
    l1000_only: Sequence[str] = (),
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Ranking and enrichment tables of every source (``{name: AnnData}``: ``observed`` and the
    methods' predictions, each restricted to the split's genes; ``scores``: sources given as
    ready scores per drug, e.g. ``l1000``). The ranking table has per source and drug its dose,
    score, rank, MoA, whether the drug is L1000-only (``l1000_only``) and the Spearman correlation
    of the source's scores with the ``observed`` and ``l1000`` ones over the drugs both score
    (``spearman_vs_observed``, ``spearman_vs_l1000``) and with ``l1000`` over the L1000-only
    drugs alone (``spearman_vs_l1000_on_l1000_only``)."""
    ranked_by_source, doses_by_source = {}, {}
    for name, adata in sources.items():
        rows = highest_dose_rows(adata.obs, line, control)
        if rows.size == 0:
            raise ValueError(f"{name}: no single-drug cells of cell line '{line}'")
        x = adata.X[rows]
        x = x.toarray() if hasattr(x, "toarray") else np.asarray(x)
        drugs = adata.obs["drug"].astype(str).to_numpy()[rows]
        doses = pd.Series(adata.obs["dose"].astype(str).to_numpy()[rows], index=drugs)
        ranked_by_source[name] = rank_drugs(
            pathway_scores(x, drugs, control_mean, genes), direction
        )
        doses_by_source[name] = doses.groupby(level=0).first()
    for name, series in (scores or {}).items():
        ranked_by_source[name] = rank_drugs(series, direction)
    order = [n for n in ("observed", *(scores or {})) if n in ranked_by_source]
    rankings, enrichments = [], []
    for name in dict.fromkeys([*order, *ranked_by_source]):
        ranked = ranked_by_source[name]
        dose = doses_by_source.get(name)
        ranked["dose"] = "" if dose is None else dose.reindex(ranked["drug"]).to_numpy()
        ranked["moa"] = moa.reindex(ranked["drug"]).fillna("").to_numpy()
        ranked.insert(0, "source", name)
        rankings.append(ranked)
        enrichments.append(moa_enrichment(ranked, moa, top_n).assign(source=name))
    ranking = pd.concat(rankings, ignore_index=True)
    ranking["l1000_only"] = ranking["drug"].isin(set(map(str, l1000_only)))
    for reference in ("observed", "l1000"):
        ref = ranking[ranking["source"] == reference].set_index("drug")["score"]
        rho = {}
        for name, block in ranking.groupby("source", sort=False):
            values = block.set_index("drug")["score"]
            both = values.index.intersection(ref.index)
            rho[name] = (
                float(stats.spearmanr(values[both], ref[both])[0]) if len(both) > 2 else np.nan
            )
        ranking[f"spearman_vs_{reference}"] = ranking["source"].map(rho)
    # the drugs no model was trained on and no cell shows: agreement with L1000 on them alone
    ref = ranking[(ranking["source"] == "l1000") & ranking["l1000_only"]].set_index("drug")["score"]
    rho = {}
    for name, block in ranking[ranking["l1000_only"]].groupby("source", sort=False):
        values = block.set_index("drug")["score"]
        both = values.index.intersection(ref.index)
        rho[name] = float(stats.spearmanr(values[both], ref[both])[0]) if len(both) > 2 else np.nan
    ranking["spearman_vs_l1000_on_l1000_only"] = ranking["source"].map(rho)
    enrichment = pd.concat(enrichments, ignore_index=True)
    columns = ["source", "moa", "k", "K", "n", "N", "p", "fdr"]
    return ranking, enrichment[columns]
