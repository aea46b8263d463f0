"""Settings of out-of-core preprocessing (:mod:`scpert.data.out_of_core`) that the Snakemake head
process reads while it builds the DAG (``workflow/rules/real_data.smk``): standard library only,
so that a dry run imports neither anndata nor h5py."""

from __future__ import annotations

from dataclasses import dataclass

#: HVG flavours computable from one pass of group sums (``datasets.<name>.hvg.flavor``)
ONE_PASS_FLAVORS = ("seurat", "cell_ranger")


@dataclass(frozen=True)
class Settings:
    """QC and normalisation (``datasets.<name>.preprocess``) and the subsample
    (``datasets.<name>.out_of_core``)."""

    min_genes: int = 0
    min_cells: int = 0
    min_cells_per_condition: int = 1
    target_sum: float = 1e4
    max_pct_mito: float | None = None
    max_cells_per_group: int = 256
    seed: int = 0

    @classmethod
    def from_config(cls, preprocess: dict, out_of_core: dict) -> Settings:
        known = set(cls.__dataclass_fields__)
        merged = {**preprocess, **{k: v for k, v in out_of_core.items() if k in known}}
        return cls(**{k: v for k, v in merged.items() if k in known})
