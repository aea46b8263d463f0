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
``counts``, else ``X``), ``symbols`` (a var column of gene symbols); ``batch_rows`` (cells read at
a time when the file is streamed out of core, ``out_of_core:``; SMILES then come from
``files.drugs`` only).
"""

from __future__ import annotations

import logging

import anndata as ad

from scpert.data.schema import SchemaError
from scpert.data.sources import Loaded, check_options
from scpert.data.sources.obs_map import (
    ObsMap,
    annotated_table,
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
OPTIONS = (*MAP_KEYS, "layer", "symbols", "batch_rows", "input")
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


def _spec(base: ObsMap, options: dict, where: str) -> ObsMap:
    return base.with_options(
        {k: v for k, v in options.items() if k in MAP_KEYS}, f"{where}.options"
    )


def _pertpy_spec(options: dict, where: str) -> ObsMap:
    check_options(options, (*OPTIONS, "preset"), where)
    preset = options.get("preset", "scperturb")
    if preset not in PERTPY_PRESETS:
        raise SchemaError(
            f"{where}.options.preset: '{preset}' is not one of {', '.join(PERTPY_PRESETS)}"
        )
    return _spec(PERTPY_PRESETS[preset], options, where)


def _mapped_spec(options: dict, where: str) -> ObsMap:
    check_options(options, OPTIONS, where)
    for key in ("context", "perturbation", "type"):
        if not options.get(key):
            raise SchemaError(f"{where}.options.{key} is required for source 'mapped'")
    return _spec(ObsMap(context=(), perturbation="", type=""), options, where)


def load_pertpy(files: dict, options: dict, control: str, where: str) -> Loaded:
    return _load(files, _pertpy_spec(options, where), options, control, where)


def load_mapped(files: dict, options: dict, control: str, where: str) -> Loaded:
    return _load(files, _mapped_spec(options, where), options, control, where)


def _load(files, spec: ObsMap, options: dict, control: str, where: str) -> Loaded:
    path = files["h5ad"]
    source = str(path)
    adata = ad.read_h5ad(path)
    raw = to_contract(
        adata,
        spec,
        control,
        source,
        layer=options.get("layer", "counts"),
        input_form=options.get("input", "counts"),
        symbols=options.get("symbols"),
    )
    table = annotated_table(
        raw.obs["drug"],
        control,
        spec,
        files,
        where,
        obs=adata.obs.loc[raw.obs_names],
        source=source,
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


# ------------------------------------------------------------------ streamed (out-of-core) files
def _reader(spec: ObsMap, options: dict, control: str):
    rows = int(options.get("batch_rows", 65536))

    def read(path):
        """A (large) h5ad read backed, ``batch_rows`` cells at a time, mapped onto the contract."""
        backed = ad.read_h5ad(path, backed="r")
        try:
            for lo in range(0, backed.n_obs, rows):
                part = backed[lo : lo + rows].to_memory()
                yield to_contract(
                    part,
                    spec,
                    control,
                    f"{path} (rows {lo}-{lo + part.n_obs})",
                    layer=options.get("layer", "counts"),
                    input_form=options.get("input", "counts"),
                    symbols=options.get("symbols"),
                    batch=True,
                )
        finally:
            backed.file.close()

    return read


def _table(spec: ObsMap, drugs, control: str, files: dict, where: str):
    return annotated_table(drugs, control, spec, files, where)


def pertpy_shard_reader(files: dict, options: dict, control: str, where: str):
    return _reader(_pertpy_spec(options, where), options, control)


def mapped_shard_reader(files: dict, options: dict, control: str, where: str):
    return _reader(_mapped_spec(options, where), options, control)


def pertpy_perturbations(drugs, control: str, files: dict, options: dict, where: str):
    return _table(_pertpy_spec(options, where), drugs, control, files, where)


def mapped_perturbations(drugs, control: str, files: dict, options: dict, where: str):
    return _table(_mapped_spec(options, where), drugs, control, files, where)
