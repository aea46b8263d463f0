"""Figures: one function per figure family, writing PDF + PNG (docs/architecture.md "Figures").

This module is light (stdlib only): the Snakemake head process reads :data:`FIGURES` to compute
the figure targets. Each family's module (``scpert.plots.<family>``) has ``data(...)``, the tidy
table the figure shows (written beside it as ``results/figures/<name>.tsv``, so that a test or a
reader can check it against the metric tables), and ``draw(data) -> matplotlib Figure``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FigureFamily:
    """One figure family: its rule and file stem ``name``, what it reads (``summary``,
    ``long``, ``comparisons``, ``predictions``), the split types it needs (None: any; the figure
    is made when a configured split has one of them), whether one figure is made per dataset
    (``results/figures/<name>_<dataset>.*``) or one for the run (``<name>.*``), and whether it
    needs a method with two or more configured variants (the ablation bars), the configured
    methods it needs (all of them; none: any run), and the stem of its data table when that is
    one of the run's tables (``results/tables/<table>_<dataset>.tsv``, not beside the figure)."""

    name: str
    reads: str
    split_types: tuple[str, ...] | None = None
    per_dataset: bool = True
    min_split_types: int = 1
    needs_variants: bool = False
    needs_methods: tuple[str, ...] = ()
    table: str | None = None


FIGURES: dict[str, FigureFamily] = {
    # PerturbDiff Fig. 3: metrics of every method on one radar per split
    "radar": FigureFamily("radar", "summary"),
    # PerturbDiff Fig. 4: per-condition values of each method against a reference method
    "scatter": FigureFamily("scatter", "long"),
    # StateXDiff Fig. 4: the combination splits side by side
    "combinations": FigureFamily(
        "combinations", "summary", ("combo_seen0", "combo_seen1", "combo_seen2"), min_split_types=2
    ),
    # scPPDM's s_d(dose) mapping: predicted vs true response magnitude along the doses of a drug
    "dose_response": FigureFamily("dose_response", "predictions", ("drug_ood",)),
    # PerturbDiff Fig. 5: -log10 FDR of predicted DE for truly DE and non-DE genes
    "padj_density": FigureFamily("padj_density", "predictions", ("drug_ood",)),
    # scPPDM Fig. 3: UMAP of predicted and true cells by cell line, logFC violins
    "umap": FigureFamily("umap", "predictions", ("drug_ood",)),
    # scPPDM Fig. 5: GSEA running enrichment scores on predicted vs true rankings (gseapy)
    "gsea": FigureFamily("gsea", "predictions", ("drug_ood",)),
    # StateXDiff Table 2 / scPPDM Fig. 4 / scDFM Fig. 5: the variants of each method
    "ablations": FigureFamily("ablations", "summary", needs_variants=True),
    # paired statistics against the best baseline (scpert.stats)
    "comparisons": FigureFamily("comparisons", "comparisons", per_dataset=False),
    # StateXDiff Fig. 3c: the protein-modality arms (config/statexdiff_protein_modality.yaml)
    "protein_modality": FigureFamily(
        "protein_modality",
        "summary",
        needs_methods=("statexdiff_rna_only", "statexdiff"),
        table="statexdiff_fig3c",
    ),
}


def figure_names(split_types, datasets, has_variants: bool = True, methods=()) -> list[str]:
    """File stems (without extension) of the figures a run with these split types (of the
    configured splits) and datasets makes; ``has_variants``: some method has two or more
    configured variants; ``methods``: the configured method names."""
    split_types = set(split_types)
    names = []
    for family in FIGURES.values():
        if family.needs_variants and not has_variants:
            continue
        if not set(family.needs_methods) <= set(methods):
            continue
        if family.split_types is not None and (
            len(split_types & set(family.split_types)) < family.min_split_types
        ):
            continue
        if family.per_dataset:
            names += [f"{family.name}_{dataset}" for dataset in datasets]
        else:
            names.append(family.name)
    return names


def figure_files(name: str) -> dict[str, str]:
    """The files of figure ``name`` (a stem of :func:`figure_names`): ``pdf``, ``png`` and its
    data table ``tsv`` (beside the figure, or under ``results/tables/`` for a family with a
    ``table``)."""
    family = next(
        (f for f in FIGURES.values() if name == f.name or name.startswith(f.name + "_")), None
    )  # None: an experiment's figure (workflow/rules/experiments.smk), data beside it
    tsv = f"results/figures/{name}.tsv"
    if family is not None and family.table is not None:
        tsv = f"results/tables/{family.table}{name[len(family.name) :]}.tsv"
    return {"pdf": f"results/figures/{name}.pdf", "png": f"results/figures/{name}.png", "tsv": tsv}
