"""GEARS-format perturbation data (Roohani et al. 2024): ``perturb_processed.h5ad`` of the GEARS
dataverse releases (Norman 2019: ``https://dataverse.harvard.edu/api/access/datafile/6154020``,
a zip holding ``norman/perturb_processed.h5ad``), the Norman layout scDFM (arXiv:2602.07103 App.
A.4.1) evaluates on.

``obs["condition"]``: ``ctrl`` for controls, ``A+ctrl`` / ``ctrl+A`` for single and ``A+B`` for
double perturbations (``ctrl`` is a placeholder slot, dropped); ``obs["cell_type"]``: the context
(K562); ``var["gene_name"]``: gene symbols (the index holds Ensembl ids). Perturbations are
genetic (CRISPRa targets), each with dose 1. GEARS releases keep raw counts in
``layers["counts"]`` when they have them; ``X`` itself is log-normalised.

Options: ``context``, ``plate`` (e.g. ``gemgroup`` when present), ``layer``, ``symbols``.
"""

from __future__ import annotations

import logging

import anndata as ad

from scpert.data.sources import Loaded, check_options
from scpert.data.sources.obs_map import ObsMap, perturbation_table, to_contract

log = logging.getLogger(__name__)

OPTIONS = ("context", "plate", "layer", "symbols", "input")
LAYOUT = ObsMap(
    context=("cell_type",),
    perturbation="condition",
    controls=("ctrl",),
    placeholder=("ctrl",),
    type="genetic",
)


def load(files: dict, options: dict, control: str, where: str) -> Loaded:
    check_options(options, OPTIONS, where)
    spec = LAYOUT.with_options(
        {k: v for k, v in options.items() if k in ("context", "plate")}, f"{where}.options"
    )
    path = files["h5ad"]
    adata = ad.read_h5ad(path)
    raw = to_contract(
        adata,
        spec,
        control,
        str(path),
        layer=options.get("layer", "counts"),
        input_form=options.get("input", "counts"),
        symbols=options.get("symbols", "gene_name"),
    )
    table = perturbation_table(raw.obs["drug"], control, "genetic")
    missing = [g for g in table["drug"] if g not in raw.var_names]
    if missing:
        log.info(
            "%s: %d perturbed genes are not measured, e.g. %s", path, len(missing), missing[:3]
        )
    log.info("%s: %d cells x %d genes, %d perturbed genes", path, raw.n_obs, raw.n_vars, len(table))
    return Loaded(raw, table)
