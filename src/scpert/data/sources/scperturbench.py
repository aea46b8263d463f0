"""scPerturBench processed h5ads (Wei et al., Nat. Methods 2025; StateXDiff arXiv:2605.16104 §4,
App. B): figshare 10.6084/m9.figshare.28143422 (cellular) and .28147883 (perturbation), Zenodo
14607156 / 14638780, files ``filter_hvg5000_logNor.h5ad`` (5000 HVGs, raw counts kept in
``layers["counts"]`` by the benchmark's preprocessing, log-normalised ``X``).

Two layouts, option ``kind``:

``chemical`` (sciplex3_A549/MCF7/K562, sciplex3_comb)
    ``obs["cov_drug_dose_name"]`` is ``<cell type>_<drug>_<dose>`` (combinations
    ``<cell type>_<A+B>_<dA+dB>``; controls ``<cell type>_control_<dose>``), the key the
    benchmark's own scripts split on; ``obs["cell_type"]`` is the context (the key's prefix) and
    ``obs["SMILES"]`` the structure (combinations ``smiA..smiB``). Doses are the file's numbers
    times ``dose_scale``.
``cellular`` (Kang, KaggleCrossCell, KaggleCrossPatient, CrossPatient)
    ``obs["condition1"]`` is the context (cell type or patient) and ``obs["condition2"]`` the
    perturbation (``control`` for controls), as the benchmark's DEG and split code reads them; no
    dose column (each perturbation gets ``default_dose``); ``type`` must be declared (Kang's
    IFN-beta: protein; the Kaggle/CrossPatient compounds: chemical, SMILES from ``files.drugs``
    or ``smiles``).

Options: ``kind``, ``type``, ``plate`` (an obs column; default one batch), ``layer`` (default
``counts``), ``dose_scale``, ``default_dose``, ``smiles`` (obs column), ``context`` (override).
"""

from __future__ import annotations

import logging

import anndata as ad
import pandas as pd

from scpert.data.schema import SchemaError
from scpert.data.sources import Loaded, check_options
from scpert.data.sources.obs_map import (
    ObsMap,
    annotated_table,
    require_columns,
    to_contract,
)

log = logging.getLogger(__name__)

KEY = "cov_drug_dose_name"
OPTIONS = (
    "kind",
    "type",
    "plate",
    "layer",
    "dose_scale",
    "default_dose",
    "smiles",
    "context",
    "input",
)
LAYOUTS = {
    "chemical": ObsMap(
        context=("cell_type",), perturbation="_drug", dose="_dose", smiles="SMILES", type="chemical"
    ),
    "cellular": ObsMap(context=("condition1",), perturbation="condition2", type=""),
}


def split_key(obs: pd.DataFrame, context: str, source) -> pd.DataFrame:
    """``cov_drug_dose_name`` -> columns ``_drug`` and ``_dose`` (the context is the prefix)."""
    require_columns(obs, [KEY, context], source)
    out = obs.copy()
    drugs, doses = [], []
    for key, cell in zip(obs[KEY].astype(str), obs[context].astype(str)):
        if not key.startswith(cell + "_") or key.count("_") < 2:
            raise SchemaError(
                f"{source}: obs['{KEY}'] value '{key}' is not '<{context}>_<drug>_<dose>' "
                f"(its {context} is '{cell}')"
            )
        drug, _, dose = key[len(cell) + 1 :].rpartition("_")
        drugs.append(drug)
        doses.append(dose)
    out["_drug"], out["_dose"] = drugs, doses
    return out


def load(files: dict, options: dict, control: str, where: str) -> Loaded:
    check_options(options, OPTIONS, where)
    kind = options.get("kind", "chemical")
    if kind not in LAYOUTS:
        raise SchemaError(f"{where}.options.kind: '{kind}' is not one of {', '.join(LAYOUTS)}")
    path = files["h5ad"]
    spec = LAYOUTS[kind].with_options(
        {k: v for k, v in options.items() if k not in ("kind", "layer", "input")},
        f"{where}.options",
    )
    if not spec.type:
        raise SchemaError(
            f"{where}.options.type: declare the perturbation type of this cellular dataset "
            "(chemical, genetic or protein)"
        )
    source = str(path)
    adata = ad.read_h5ad(path)
    obs = split_key(adata.obs, spec.context[0], source) if kind == "chemical" else adata.obs
    adata.obs = obs
    raw = to_contract(
        adata,
        spec,
        control,
        source,
        layer=options.get("layer", "counts"),
        input_form=options.get("input", "counts"),
    )
    table = annotated_table(
        raw.obs["drug"],
        control,
        spec,
        files,
        where,
        obs=obs.loc[raw.obs_names],
        source=source,
        require_smiles_column=False,
    )
    log.info(
        "%s: %d cells x %d genes, %d perturbations (%s)",
        source,
        raw.n_obs,
        raw.n_vars,
        len(table),
        spec.type,
    )
    return Loaded(raw, table)
