"""Rule steps of the out-of-core preprocessing (scpert.data.out_of_core): qc_shard, plan_shards,
preprocess_shard, gather_shards, select_hvg_streamed, perturbation_table."""

from __future__ import annotations

import logging

from scpert import runtime
from scpert.data import io, sources
from scpert.data import out_of_core as ooc

log = logging.getLogger(__name__)


def _reader(source, files, options, control, where):
    return sources.shard_reader(source, files, options, control, where)


def qc_shard(
    source, shard, files: dict, options: dict, settings: dict, control: str, out_path, where: str
) -> None:
    """Rule qc_shard: pass A over one shard."""
    read = _reader(source, files, options, control, where)
    runtime.write_atomic(
        out_path, lambda tmp: ooc.qc_shard(read(shard), ooc.Settings(**settings), tmp)
    )


def plan_shards(qc_paths, settings: dict, control: str, out_path, where: str) -> None:
    """Rule plan_shards: gather A (genes, groups and subsample thresholds)."""
    plan = ooc.plan_shards(list(qc_paths), ooc.Settings(**settings), control, where)
    runtime.write_atomic(out_path, plan.write)


def preprocess_shard(
    source, shard, files: dict, options: dict, plan_path, control: str, out_path, where: str
) -> None:
    """Rule preprocess_shard: pass B over one shard."""
    read = _reader(source, files, options, control, where)
    plan = ooc.Plan.read(plan_path)
    runtime.write_atomic(out_path, lambda tmp: ooc.preprocess_shard(read(shard), plan, tmp))


def gather_shards(
    shard_paths, plan_path, control: str, out_processed, out_stats, memory_mb: float = 512.0
) -> None:
    """Rule gather_shards: group statistics and the subsample's processed.h5ad (chunked)."""
    plan = ooc.Plan.read(plan_path)
    with (
        runtime.atomic_path(out_stats) as stats_tmp,
        runtime.atomic_path(out_processed) as processed_tmp,
    ):
        ooc.gather_shards(
            list(shard_paths), plan, processed_tmp, stats_tmp, control, memory_mb=memory_mb
        )


def select_hvg_streamed(
    stats_path, split_path, out_path, params: dict, control: str, key: str, ranking_path=None
) -> None:
    """Rule select_hvg_streamed: the split's HVGs (``out_path``) and every gene's variability rank
    (``ranking_path``) from the group statistics (train + controls)."""
    from scpert.data.preprocess import top_genes

    ranking = ooc.hvg_ranking_from_stats(
        stats_path,
        io.read_split(split_path),
        n_top_genes=params["n_top_genes"],
        flavor=params.get("flavor", "seurat"),
        control=control,
        key=key,
    )
    genes = top_genes(ranking, params["n_top_genes"])
    runtime.write_tsv(genes, out_path)
    if ranking_path is not None:
        runtime.write_tsv(ranking, ranking_path)
    log.info("kept %d of %d genes", len(genes), len(ranking))


def perturbation_table(
    source, plan_path, files: dict, options: dict, control: str, out_path, where: str
) -> None:
    """Rule perturbation_table: drugs.tsv of an out-of-core dataset (the drugs its plan keeps)."""
    plan = ooc.Plan.read(plan_path)
    table = sources.perturbations(
        source, plan.groups["drug"].unique(), control, files, options, where
    )
    runtime.write_tsv(table, out_path)
    log.info("wrote %d perturbations", len(table))
