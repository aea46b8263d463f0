"""Map a published AnnData's obs columns onto the data contract (docs/architecture.md, "Data contract").

A source describes its layout with an :class:`ObsMap`: which obs column holds the cellular
context (cell line, cell type or donor; several columns are joined with ``_``), the perturbation
label and its control labels, how combinations are written (``A+B``; GEARS writes single
perturbations ``A+ctrl``), the dose column and its unit, and the batch column that becomes
``plate``. :func:`map_obs` returns the contract's ``cell_line, drug, dose, plate`` for every cell
and drops cells without a context or a perturbation label (public files carry some, e.g. unassigned
guides), saying how many in the log. Errors name the file and the column.

The matrix (:func:`counts_matrix`): raw counts from ``layers[layer]`` when present, else ``X``
when it holds integers; a file with log-normalised values only is refused here with the file
named (the preprocessing of such inputs is a separate, declared path).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from scpert.data import schema
from scpert.data.schema import SchemaError

log = logging.getLogger(__name__)

#: dose unit -> factor to micromolar (the contract's unit)
UNIT_TO_UM = {"um": 1.0, "µm": 1.0, "μm": 1.0, "micromolar": 1.0, "nm": 1e-3, "mm": 1e3, "pm": 1e-6}
PERTURBATION_TYPES = ("chemical", "genetic", "protein")


@dataclass(frozen=True)
class ObsMap:
    """Where a source keeps the contract's fields (see the module docstring)."""

    context: tuple[str, ...]
    perturbation: str
    controls: tuple[str, ...] = ("control",)
    combo_sep: str = "+"
    #: components removed from a label before it is read (GEARS: "A+ctrl" is the single A)
    placeholder: tuple[str, ...] = ()
    dose: str | None = None
    dose_unit: str | None = None  # obs column with the unit of each dose (else doses are uM)
    dose_scale: float = 1.0  # multiplies every dose (a source's own dose scale -> uM)
    default_dose: float = 1.0  # dose of each component when the source has no dose column
    plate: str | None = None
    default_plate: str = "batch0"
    smiles: str | None = None  # obs column with the (combined) SMILES of chemicals
    type: str = "chemical"
    extra: dict = field(default_factory=dict)

    def with_options(self, options: dict, where: str) -> ObsMap:
        """This map with the config's overrides (``datasets.<name>.load.options``)."""
        known = set(self.__dataclass_fields__) - {"extra"}
        updates = {}
        for key, value in options.items():
            if key not in known:
                continue
            if key in ("context", "controls", "placeholder") and isinstance(value, str):
                value = (value,)
            updates[key] = tuple(value) if isinstance(value, list) else value
        mapped = replace(self, **updates)
        if mapped.type and mapped.type not in PERTURBATION_TYPES:  # "" = not declared yet
            raise SchemaError(
                f"{where}.type: '{mapped.type}' is not one of {', '.join(PERTURBATION_TYPES)}"
            )
        return mapped


def require_columns(obs: pd.DataFrame, columns, source) -> None:
    missing = [c for c in columns if c and c not in obs.columns]
    if missing:
        shown = ", ".join(list(obs.columns)[:12])
        raise SchemaError(f"{source}: obs['{missing[0]}'] is missing (obs has: {shown})")


def map_obs(
    obs: pd.DataFrame, spec: ObsMap, control: str, source, *, batch: bool = False
) -> pd.DataFrame:
    """The contract's obs (``cell_line, drug, dose, plate``) of the cells that have a context and
    a perturbation label; the index is kept and ``attrs["rows"]`` holds their positions. A
    ``batch`` (one part of a streamed file) may lack controls or labelled cells."""
    require_columns(
        obs, [*spec.context, spec.perturbation, spec.dose, spec.dose_unit, spec.plate], source
    )
    keep = obs[spec.perturbation].notna().to_numpy()
    for key in spec.context:
        keep &= obs[key].notna().to_numpy()
    labels = obs[spec.perturbation].astype(str)
    keep &= ~labels.str.lower().isin(("nan", "none", "")).to_numpy()
    if not keep.all():
        log.info(
            "%s: %d of %d cells have no context or perturbation label; dropped",
            source,
            (~keep).sum(),
            len(obs),
        )
    rows = np.flatnonzero(keep)
    obs = obs.iloc[rows]
    if obs.empty and not batch:
        raise SchemaError(f"{source}: no cell has a value in obs['{spec.perturbation}']")
    labels = labels[keep]
    context = obs[spec.context[0]].astype(str)
    for key in spec.context[1:]:
        context = context + "_" + obs[key].astype(str)
    drugs, n_parts = _perturbations(labels, spec, control, source)
    doses = _doses(obs, spec, drugs, n_parts, control, source)
    plate = (
        obs[spec.plate].astype(str)
        if spec.plate
        else pd.Series(spec.default_plate, index=obs.index)
    )
    out = pd.DataFrame(
        {
            schema.CELL_LINE: context.to_numpy(),
            schema.DRUG: drugs,
            schema.DOSE: doses,
            schema.PLATE: plate.to_numpy(),
        },
        index=obs.index,
    )
    out.attrs["rows"] = rows
    if not batch and not (out[schema.DRUG] == control).any():
        raise SchemaError(
            f"{source}: no control cells: obs['{spec.perturbation}'] has none of "
            f"{', '.join(repr(c) for c in spec.controls)} (set load.options.controls)"
        )
    return out


def _perturbations(labels: pd.Series, spec: ObsMap, control: str, source):
    """Contract perturbation names (``A`` / ``A+B`` / the control label) and component counts."""
    controls = set(spec.controls)
    placeholder = set(spec.placeholder)
    names = {}
    for label in pd.unique(labels):
        if label in controls:
            names[label] = (control, 0)
            continue
        parts = [p.strip() for p in label.split(spec.combo_sep) if p.strip()]
        parts = [p for p in parts if p not in placeholder and p not in controls]
        if not parts:
            names[label] = (control, 0)
            continue
        for part in parts:
            if schema.COMBO_SEP in part or schema.CONDITION_SEP in part or part == control:
                raise SchemaError(
                    f"{source}: perturbation '{label}' has a component '{part}' containing "
                    f"'{schema.COMBO_SEP}' or '{schema.CONDITION_SEP}' or equal to the control label"
                )
        names[label] = (schema.COMBO_SEP.join(parts), len(parts))
    drugs = labels.map(lambda x: names[x][0]).to_numpy()
    n_parts = labels.map(lambda x: names[x][1]).to_numpy()
    return drugs, n_parts


def _doses(obs, spec: ObsMap, drugs, n_parts, control, source) -> np.ndarray:
    """Canonical dose text (uM; ``dA+dB`` for combinations, ``0`` for controls)."""
    if spec.dose is None:
        one = schema.format_dose(spec.default_dose)
        return np.array(
            [schema.COMBO_SEP.join([one] * n) if n else "0" for n in n_parts], dtype=object
        )
    factor = np.full(len(obs), spec.dose_scale)
    if spec.dose_unit:
        units = obs[spec.dose_unit].astype(str).str.strip().str.lower()
        unknown = sorted(set(units[(n_parts > 0)]) - set(UNIT_TO_UM) - {"nan", "none", ""})
        if unknown:
            raise SchemaError(
                f"{source}: obs['{spec.dose_unit}'] has units {unknown[:3]} (known: {', '.join(UNIT_TO_UM)})"
            )
        factor = factor * units.map(UNIT_TO_UM).fillna(1.0).to_numpy()
    raw = obs[spec.dose].astype(str).to_numpy()
    out = np.empty(len(obs), dtype=object)
    cache: dict[tuple, str] = {}
    for i, (text, n, f) in enumerate(zip(raw, n_parts, factor)):
        if n == 0:
            out[i] = "0"
            continue
        key = (text, n, f)
        if key not in cache:
            parts = [
                p
                for p in str(text).replace(spec.combo_sep, schema.COMBO_SEP).split(schema.COMBO_SEP)
            ]
            if len(parts) == 1 and n > 1:
                parts = parts * n  # one dose written for every component
            try:
                values = [float(p) * f for p in parts]
            except ValueError:
                raise SchemaError(
                    f"{source}: obs['{spec.dose}'] value '{text}' (perturbation '{drugs[i]}') is not numeric"
                ) from None
            if len(values) != n or not all(np.isfinite(v) and v >= 0 for v in values):
                raise SchemaError(
                    f"{source}: obs['{spec.dose}'] value '{text}' does not give one non-negative "
                    f"dose per component of '{drugs[i]}'"
                )
            cache[key] = schema.COMBO_SEP.join(schema.format_dose(v) for v in values)
        out[i] = cache[key]
    return out


def gene_symbols(adata: ad.AnnData, column: str | None, source) -> pd.Index:
    """Gene symbols of ``var``: the column ``column`` (e.g. GEARS' ``gene_name`` beside Ensembl
    ids) or the index; duplicates made unique the anndata way (``-1``, ``-2``) with a log line."""
    if column:
        if column not in adata.var.columns:
            raise SchemaError(f"{source}: var['{column}'] (gene symbols) is missing")
        symbols = adata.var[column].astype(str)
    else:
        symbols = pd.Series(adata.var_names.astype(str), index=adata.var_names)
    index = pd.Index(symbols.to_numpy())
    if not index.is_unique:
        n = int(index.duplicated().sum())
        log.info("%s: %d duplicated gene symbols made unique (-1, -2, ...)", source, n)
        index = pd.Index(ad.utils.make_index_unique(index))
    return index


def counts_matrix(
    adata: ad.AnnData, layer: str | None, source, input_form: str = "counts"
) -> sp.csr_matrix:
    """Raw counts as float32 CSR: ``layers[layer]`` if present, else ``X`` if it is integer, or
    the counts recovered from a log-normalised ``X`` when declared (``input_form`` ``lognorm``,
    :func:`scpert.data.input_forms.counts_from_lognorm`)."""
    from scpert.data.input_forms import counts_from_lognorm, looks_lognormalised

    if layer and layer in adata.layers:
        matrix, where = adata.layers[layer], f"layers['{layer}']"
    else:
        matrix, where = adata.X, "X"
    matrix = sp.csr_matrix(matrix, dtype=np.float32)
    matrix.eliminate_zeros()
    data = matrix.data
    if data.size and (data.min() < 0 or not np.array_equal(data, np.round(data))):
        if input_form == "lognorm":
            return counts_from_lognorm(matrix, source, where)
        hint = (
            "it looks log-normalised: declare it with datasets.<name>.input: lognorm, or give "
            "the raw counts"
            if looks_lognormalised(matrix)
            else "a log-normalised release needs its raw counts or datasets.<name>.input: lognorm"
        )
        raise SchemaError(
            f"{source}: {where} does not hold raw integer counts"
            f"{f' and there is no layers[{layer!r}]' if layer else ''} ({hint})"
        )
    return matrix


def to_contract(
    adata: ad.AnnData,
    spec: ObsMap,
    control: str,
    source,
    *,
    layer="counts",
    symbols=None,
    batch=False,
    input_form="counts",
) -> ad.AnnData:
    """A raw-count AnnData in the contract (obs ``cell_line, drug, dose, plate``; var = symbols)."""
    obs = map_obs(adata.obs, spec, control, source, batch=batch)
    rows = obs.attrs.pop("rows")
    counts = counts_matrix(adata, layer, source, input_form)[rows]
    var = pd.DataFrame(index=gene_symbols(adata, symbols, source))
    out = ad.AnnData(X=counts, obs=obs, var=var)
    out.obs_names = adata.obs_names[rows].astype(str)
    return out


def perturbation_table(
    obs_drugs: pd.Series,
    control: str,
    kind: str,
    smiles: dict[str, str] | None = None,
    moa: dict[str, str] | None = None,
    targets: dict[str, str] | None = None,
) -> pd.DataFrame:
    """One row per single perturbation (combination components included): ``drug, smiles, moa,
    targets, type``. Genetic perturbations target their own gene."""
    singles = sorted(
        {c for d in pd.unique(obs_drugs) if d != control for c in schema.components(d)}
    )
    smiles, moa, targets = smiles or {}, moa or {}, targets or {}
    return pd.DataFrame(
        {
            "drug": singles,
            "smiles": [smiles.get(d, "") if kind == "chemical" else "" for d in singles],
            "moa": [moa.get(d, "") for d in singles],
            "targets": [targets.get(d, d if kind == "genetic" else "") for d in singles],
            "type": kind,
        }
    )


def annotated_table(
    drugs,
    control: str,
    spec: ObsMap,
    files: dict,
    where: str,
    *,
    obs: pd.DataFrame | None = None,
    source=None,
    require_smiles_column: bool = True,
) -> pd.DataFrame:
    """The perturbation table (:func:`perturbation_table`) of the contract's ``drugs`` labels:
    SMILES of a chemical dataset from the obs column ``spec.smiles`` (``obs`` aligned with
    ``drugs``; a missing column is an error unless ``require_smiles_column`` is false), then the
    side table ``files["drugs"]`` (:func:`read_side_table`; ``where``: the config entry), whose
    ``smiles``, ``moa`` and ``targets`` take precedence."""
    labels = pd.Series(drugs).astype(str)
    smiles, moa, targets = {}, {}, {}
    if spec.type == "chemical" and spec.smiles and obs is not None:
        if require_smiles_column or spec.smiles in obs.columns:
            smiles = smiles_from_obs(obs, labels, spec.smiles, spec.combo_sep, source)
    if files.get("drugs"):
        side = read_side_table(files["drugs"], f"{where}.files.drugs")
        smiles = {**smiles, **side["smiles"].to_dict()}
        moa = side["moa"].to_dict()
        targets = {d: t for d, t in side["targets"].to_dict().items() if t}
    return perturbation_table(
        pd.Series(pd.unique(labels)), control, spec.type, smiles=smiles, moa=moa, targets=targets
    )


def smiles_from_obs(
    obs: pd.DataFrame, labels: pd.Series, column: str, sep: str, source
) -> dict[str, str]:
    """Drug -> SMILES from an obs column aligned with the (contract) drug names; combinations'
    SMILES (``smiA..smiB`` as scPerturBench/CPA write them) are split on ``..`` when the count
    of parts matches, else only single drugs are read."""
    require_columns(obs, [column], source)
    found: dict[str, str] = {}
    for drug, smi in zip(labels.to_numpy(), obs[column].astype(str).to_numpy()):
        if not smi or smi.lower() in ("nan", "none"):
            continue
        parts = schema.components(drug)
        smis = smi.split("..") if len(parts) > 1 else [smi]
        if len(smis) != len(parts):
            continue
        for name, s in zip(parts, smis):
            found.setdefault(name, s)
    return found


def read_side_table(path: str | Path, source_key: str) -> pd.DataFrame:
    """A drug table beside the data: CSV/TSV with a header (``drug``/``name``, ``smiles``,
    optional ``moa``/``pathway``, ``targets``) or chemCPA's headerless ``name,smiles,pathway``."""
    path = Path(path)
    sep = "\t" if path.suffix in (".tsv", ".txt") else ","
    table = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, skipinitialspace=True)
    cols = {c.lower(): c for c in table.columns}
    name = cols.get("drug") or cols.get("name")
    if name is None or "smiles" not in cols:
        table = pd.read_csv(
            path, sep=sep, dtype=str, keep_default_na=False, header=None, skipinitialspace=True
        )
        if table.shape[1] < 2:
            raise SchemaError(f"{path} ({source_key}): expected columns drug, smiles[, moa]")
        table = table.rename(columns={0: "drug", 1: "smiles", 2: "moa"})
    else:
        table = table.rename(
            columns={
                name: "drug",
                cols["smiles"]: "smiles",
                **({cols["moa"]: "moa"} if "moa" in cols else {}),
                **({cols["pathway"]: "moa"} if "pathway" in cols and "moa" not in cols else {}),
                **({cols["targets"]: "targets"} if "targets" in cols else {}),
            }
        )
    for col in ("moa", "targets"):
        if col not in table.columns:
            table[col] = ""
    return table[["drug", "smiles", "moa", "targets"]].drop_duplicates("drug").set_index("drug")
