"""Loaders of the published datasets: each maps one source's files onto the data contract.

A loader returns a :class:`Loaded`: raw counts in the contract (obs ``cell_line, drug, dose,
plate``; var = gene symbols) and the perturbation table (``drug, smiles, moa, targets, type``; one
row per single perturbation, ``type`` chemical / genetic / protein). Rule ``import_dataset`` writes
them to ``resources/raw/{dataset}/counts.h5ad`` and ``drugs.tsv``. Modules are imported on first
use, so the Snakemake head process can list the sources without pandas or anndata.

==================  ====================================================  ==========================
source              files (``datasets.<name>.load.files``)                module
==================  ====================================================  ==========================
``scperturbench``   ``h5ad`` (scPerturBench release), optional ``drugs``  :mod:`.scperturbench`
``gears``           ``h5ad`` (GEARS ``perturb_processed.h5ad``)           :mod:`.gears`
``pertpy``          ``h5ad`` (pertpy / scPerturb example data), ``drugs``  :mod:`.mapped`
``mapped``          ``h5ad`` with the obs columns named in the options     :mod:`.mapped`
``tahoe``           ``shards`` (parquet), ``genes``, ``samples``, ...     :mod:`.tahoe`
==================  ====================================================  ==========================

CITE-seq (:mod:`.citeseq`, RNA + ADT) and LINCS L1000 (:mod:`.lincs`) are loaded by their own
rules: they are resources of the priors, not perturbation datasets.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from scpert.errors import ConfigError


@dataclass(frozen=True)
class Source:
    """A loader: ``module:function`` under scpert.data.sources, called as ``(files, options,
    control, where) -> Loaded``, and the file roles it requires and accepts. A source that can be
    streamed (out-of-core preprocessing) names the role of its shard files and, in its module,
    ``<prefix>shard_reader(files, options, control, where) -> (path -> batches)`` and
    ``<prefix>perturbations(drugs, control, files, options, where) -> DataFrame``."""

    entry: str
    files: tuple[str, ...]
    optional: tuple[str, ...] = ()
    shard_role: str | None = None
    stream_prefix: str = ""

    @property
    def module(self) -> str:
        return self.entry.split(":")[0]

    @property
    def sharded(self) -> bool:
        return self.shard_role is not None


SOURCES = {
    "scperturbench": Source("scperturbench:load", ("h5ad",), ("drugs",)),
    "gears": Source("gears:load", ("h5ad",)),
    "pertpy": Source("mapped:load_pertpy", ("h5ad",), ("drugs",), "h5ad", "pertpy_"),
    "mapped": Source("mapped:load_mapped", ("h5ad",), ("drugs",), "h5ad", "mapped_"),
    "tahoe": Source(
        "tahoe:load", ("shards", "genes", "samples"), ("drugs", "cell_lines"), "shards"
    ),
}
#: the sources whose shards can be streamed
SHARDED = tuple(name for name, spec in SOURCES.items() if spec.sharded)


@dataclass
class Loaded:
    adata: Any  # anndata.AnnData, raw counts in the contract
    perturbations: Any  # pandas.DataFrame: drug, smiles, moa, targets, type


def spec(source: str) -> Source:
    if source not in SOURCES:
        raise ConfigError(f"unknown source '{source}' (known: {', '.join(sorted(SOURCES))})")
    return SOURCES[source]


def module(source: str):
    return importlib.import_module(f"scpert.data.sources.{spec(source).module}")


def check_files(source: str, files: dict, where: str) -> None:
    """Every required file role given, no unknown one (``where``: ``datasets.<name>.load``)."""
    entry = spec(source)
    missing = [role for role in entry.files if not files.get(role)]
    if missing:
        raise ConfigError(f"{where}.files.{missing[0]} is required for source '{source}'")
    unknown = sorted(set(files) - set(entry.files) - set(entry.optional))
    if unknown:
        raise ConfigError(f"{where}.files.{unknown[0]}: not a file of source '{source}'")


def load(source: str, files: dict, options: dict, control: str, where: str) -> Loaded:
    """Load dataset files with the loader of ``source``; ``where`` names the config entry
    (``datasets.<name>.load``) in errors about files and options."""
    check_files(source, files, where)
    function = getattr(module(source), SOURCES[source].entry.split(":")[1])
    return function(files, options or {}, control, where)


def check_options(options: dict, known, where: str) -> None:
    """Unknown option keys are config errors naming the key."""
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigError(
            f"{where}.options.{unknown[0]}: unknown option (known: {', '.join(sorted(known))})"
        )


def _streamed(source: str, where: str) -> Source:
    entry = spec(source)
    if not entry.sharded:
        raise ConfigError(
            f"{where}: out_of_core needs a source that streams ({', '.join(SHARDED)}), not '{source}'"
        )
    return entry


def shard_reader(source: str, files: dict, options: dict, control: str, where: str):
    """``path -> batches of cells`` (raw counts in the contract) for an out-of-core dataset."""
    entry = _streamed(source, where)
    function = getattr(module(source), f"{entry.stream_prefix}shard_reader")
    return function(files, options or {}, control, where)


def perturbations(source: str, drugs, control: str, files: dict, options: dict, where: str):
    """The perturbation table of an out-of-core dataset's ``drugs`` (its loader's conventions)."""
    entry = _streamed(source, where)
    function = getattr(module(source), f"{entry.stream_prefix}perturbations")
    return function(drugs, control, files, options or {}, where)
