"""Condition-level logFC of the truth and of each prediction against the cell line's true controls,
as the scPPDM protocol computes it (scPPDM App. C.2, :mod:`scpert.metrics.scppdm`):
``LFC = log2((mu_post + eps) / (mu_pre + eps))`` on pseudobulk means of log-normalised expression,
``eps = PSEUDOCOUNT``, ``mu_pre`` the true controls of the condition's line for every method."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

TRUTH = "truth"


def group_means(x, labels: np.ndarray) -> pd.DataFrame:
    """Mean row of ``x`` per label (index: the labels in order of appearance)."""
    codes, names = pd.factorize(labels)
    membership = sp.csr_matrix(
        (np.ones(codes.size), (codes, np.arange(codes.size))), shape=(names.size, codes.size)
    )
    sums = membership @ x
    sums = sums.toarray() if sp.issparse(sums) else np.asarray(sums)
    return pd.DataFrame(sums / np.bincount(codes)[:, None], index=names)


def condition_lfc(truth, predictions: dict, control: str, test_conditions):
    """``(described, lfc)``: ``described`` the obs row (cell_line, drug, dose) of each test condition
    present in ``truth``; ``lfc[method]`` a conditions x genes frame (columns: ``truth.var_names``)
    for ``truth`` (:data:`TRUTH`) and every prediction."""
    from scpert.metrics import de
    from scpert.metrics.scppdm import PSEUDOCOUNT

    obs = truth.obs
    is_ctrl = (obs["drug"].astype(str) == control).to_numpy()
    ctrl = group_means(truth.X[is_ctrl], obs["cell_line"].astype(str).to_numpy()[is_ctrl])
    described = obs[~is_ctrl].drop_duplicates("condition").set_index("condition")
    test = [c for c in dict.fromkeys(map(str, test_conditions)) if c in described.index]
    described = described.loc[test, ["cell_line", "drug", "dose"]].astype({"cell_line": str})
    pre = ctrl.loc[described["cell_line"]].to_numpy()
    lfc = {}
    for method, adata in [(TRUTH, truth), *predictions.items()]:
        labels = adata.obs["condition"].astype(str).to_numpy()
        keep = np.isin(labels, test)
        post = group_means(adata.X[keep], labels[keep]).loc[test].to_numpy()
        values = de.log2fc_pseudocount(post, pre, PSEUDOCOUNT)
        lfc[method] = pd.DataFrame(values, index=test, columns=list(truth.var_names))
    return described, lfc
