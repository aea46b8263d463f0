"""h5ads whose obs columns are named in the config (source ``mapped``), and pertpy's example
datasets (source ``pertpy``; ``https://exampledata.scverse.org/pertpy/<name>.h5ad``), which follow
scPerturb's harmonised annotation (Peidli et al. 2024): ``perturbation`` (``control`` for
controls), ``dose_value`` with ``dose_unit``, ``cell_line``.

``pertpy`` presets (option ``preset``):

=================  ===========================================================================
``scperturb``      ``perturbation`` / ``dose_value`` + ``dose_unit`` / ``cell_line`` (default;
                   e.g. ``srivatsan_2020_sciplex3``, SMILES from ``files.drugs``)
``kang_2018``      ``label`` (``ctrl`` / ``stim``: IFN-beta) / ``cell_type`` / ``replicate``;
                   a cytokine, perturbation type ``protein``
=================  ===========================================================================

Options (both sources; ``mapped`` requires ``context``, ``perturbation`` and ``type``): ``context`` (one
column or a list, joined with ``_``), ``perturbation``, ``controls``, ``combo_sep``,
``placeholder``, ``dose``, ``dose_unit``, ``dose_scale``, ``default_dose``, ``plate``,
``smiles``, ``type`` (chemical / genetic / protein), ``layer`` (raw counts; default
``counts``, else ``X``), ``symbols`` (a var column of gene symbols).
"""

from __future__ import annotations

import logging

import anndata as ad

from scpert.data.schema import SchemaError
from scpert.data.sources import Loaded, check_options
from scpert.data.sources.obs_map import (
    ObsMap,
    perturbation_table,
    read_side_table,
    smiles_from_obs,
    to_contract,
)

log = logging.getLogger(__name__)

MAP_KEYS = (
    "context",
    "perturbation",
    "controls",
    "combo_sep",
    "placeholder",
    "dose",
    "dose_unit",
    "dose_scale",
    "default_dose",
    "plate",
    "default_plate",
    "smiles",
    "type",
)
OPTIONS = (*MAP_KEYS, "layer", "symbols")
PERTPY_PRESETS = {
    "scperturb": ObsMap(
        context=("cell_line",),
        perturbation="perturbation",
        controls=("control",),
        dose="dose_value",
        dose_unit="dose_unit",
        type="chemical",
    ),
    "kang_2018": ObsMap(
        context=("cell_type",),
        perturbation="label",
        controls=("ctrl",),
        plate="replicate",
        type="protein",
    ),
}


def load_pertpy(files: dict, options: dict, control: str, where: str) -> Loaded:
    check_options(options, (*OPTIONS, "preset"), where)
    preset = options.get("preset", "scperturb")
    if preset not in PERTPY_PRESETS:
        raise SchemaError(
            f"{where}.options.preset: '{preset}' is not one of {', '.join(PERTPY_PRESETS)}"
        )
    rest = {k: v for k, v in options.items() if k != "preset"}
    return _load(files, PERTPY_PRESETS[preset], rest, control, where)


def load_mapped(files: dict, options: dict, control: str, where: str) -> Loaded:
    check_options(options, OPTIONS, where)
    for key in ("context", "perturbation", "type"):
        if not options.get(key):
            raise SchemaError(f"{where}.options.{key} is required for source 'mapped'")
    base = ObsMap(context=(), perturbation="", type="")
    return _load(files, base, options, control, where)


def _load(files, base: ObsMap, options: dict, control: str, where: str) -> Loaded:
    spec = base.with_options(
        {k: v for k, v in options.items() if k in MAP_KEYS}, f"{where}.options"
    )
    path = files["h5ad"]
    source = str(path)
    adata = ad.read_h5ad(path)
    raw = to_contract(
        adata,
        spec,
        control,
        source,
        layer=options.get("layer", "counts"),
        symbols=options.get("symbols"),
    )
    smiles, moa = {}, {}
    if spec.type == "chemical" and spec.smiles:
        kept = adata.obs.loc[raw.obs_names]
        smiles = smiles_from_obs(kept, raw.obs["drug"], spec.smiles, spec.combo_sep, source)
    if files.get("drugs"):
        side = read_side_table(files["drugs"], f"{where}.files.drugs")
        smiles = {**smiles, **side["smiles"].to_dict()}
        moa = side["moa"].to_dict()
    table = perturbation_table(raw.obs["drug"], control, spec.type, smiles=smiles, moa=moa)
    log.info(
        "%s: %d cells x %d genes, %d perturbations (%s)",
        source,
        raw.n_obs,
        raw.n_vars,
        len(table),
        spec.type,
    )
    return Loaded(raw, table)
