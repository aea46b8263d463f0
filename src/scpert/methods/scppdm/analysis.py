"""Dose monotonicity of predicted effects (scppdm.txt §3.3.2 and App. F.5's claim)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd

from scpert.data import pairing, schema
from scpert.data.schema import CELL_LINE, DOSE, DRUG


def dose_monotonicity(
    cells: ad.AnnData, controls: ad.AnnData, control: str = schema.DEFAULT_CONTROL
) -> pd.DataFrame:
    """Does the effect magnitude grow with dose?

    Effect magnitude of a condition = L2 norm over genes of (mean of its cells - mean of its cell
    line's control cells), in the log-normalised space of ``cells`` (predictions or truth). Per
    single drug, magnitudes are averaged over cell lines per dose; the drug is monotone when that
    average strictly increases along its sorted doses. Combinations and drugs with one dose are
    left out. Returns one row per drug: ``drug, n_doses, magnitudes`` (by increasing dose) and
    ``monotone``; the claim's number is ``table["monotone"].mean()``.
    """
    genes = [str(g) for g in cells.var_names]
    ctrl = controls[(controls.obs[DRUG].astype(str) == control).to_numpy()]
    ctrl = pairing.ControlCells(ctrl, genes)
    line_mean = {line: ctrl.index.mean(line) for line in ctrl.index.contexts}
    obs = cells.obs
    keep = ~obs[DRUG].astype(str).map(schema.is_combo).to_numpy(dtype=bool)
    keep &= (obs[DRUG].astype(str) != control).to_numpy()
    kept = cells[keep]
    bulk = pairing.pseudobulks(kept.X, kept.obs, [DRUG, CELL_LINE, DOSE])
    table = bulk.keys.assign(
        **{DOSE: bulk.keys[DOSE].astype(float)},
        magnitude=[
            float(np.linalg.norm(mean - line_mean[str(line)]))
            for mean, line in zip(bulk.means, bulk.keys[CELL_LINE])
        ],
    )
    by_dose = table.groupby([DRUG, DOSE]).magnitude.mean().reset_index().sort_values([DRUG, DOSE])
    out = []
    for drug, part in by_dose.groupby(DRUG):
        mags = part["magnitude"].to_numpy()
        if len(mags) >= 2:
            out.append((drug, len(mags), mags.round(6).tolist(), bool(np.all(np.diff(mags) > 0))))
    return pd.DataFrame(out, columns=[DRUG, "n_doses", "magnitudes", "monotone"])
