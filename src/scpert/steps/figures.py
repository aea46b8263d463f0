"""Rule steps of the figures (scpert.plots): heatmap and one ``figure_<family>`` per family of
:data:`scpert.plots.FIGURES`, each writing PDF + PNG and the table the figure shows (TSV)."""

from __future__ import annotations

import pandas as pd

from scpert import runtime


def heatmap(summary_path, pdf_path, png_path, protocol: str) -> None:
    """Rule heatmap: methods x metrics of one protocol's summary, PDF + PNG."""
    import matplotlib.pyplot as plt

    from scpert.plots.heatmap import heatmap as draw

    fig = draw(pd.read_csv(summary_path, sep="\t"), protocol)
    runtime.write_atomic(
        pdf_path, lambda p: fig.savefig(p, format="pdf", metadata={"CreationDate": None})
    )
    runtime.write_atomic(png_path, lambda p: fig.savefig(p, format="png", dpi=150))
    plt.close(fig)


def _read(path) -> pd.DataFrame:
    from scpert.data import io

    return io.read_tsv(path, "table", (), dtype={"condition": str, "deg_set": str}, min_rows=0)


def _save(fig, table, outputs: dict) -> None:
    from scpert.plots.common import save

    save(fig, outputs["pdf"], outputs["png"], table, outputs["tsv"])


def figure_radar(summary_path, outputs: dict, dataset: str) -> None:
    """Rule figure_radar: key metrics of every method per split of ``dataset``."""
    from scpert.plots import radar

    table = radar.data(_read(summary_path), dataset)
    _save(radar.draw(table, f"{dataset}: key metrics per split (1 = best row)"), table, outputs)


def figure_scatter(long_path, outputs: dict, dataset: str, baselines, reference=None) -> None:
    """Rule figure_scatter: per-condition values of each method against a reference method."""
    from scpert.plots import scatter

    table = scatter.data(_read(long_path), dataset, baselines, reference)
    _save(scatter.draw(table), table, outputs)


def figure_combinations(summary_path, outputs: dict, dataset: str, split_types: dict) -> None:
    """Rule figure_combinations: the combination splits side by side."""
    from scpert.plots import combinations

    table = combinations.data(_read(summary_path), dataset, split_types)
    _save(combinations.draw(table), table, outputs)


def figure_ablations(summary_path, outputs: dict, dataset: str, bases: dict) -> None:
    """Rule figure_ablations: the variants of each method with two or more of them."""
    from scpert.plots import ablations

    table = ablations.data(_read(summary_path), dataset, bases)
    _save(ablations.draw(table), table, outputs)


def figure_protein_modality(summary_path, outputs: dict, dataset: str) -> None:
    """Rule figure_protein_modality: StateXDiff's protein-modality arms (Fig. 3c)."""
    from scpert.plots import protein_modality

    table = protein_modality.data(_read(summary_path), dataset)
    _save(protein_modality.draw(table), table, outputs)


def figure_comparisons(comparisons_path, outputs: dict) -> None:
    """Rule figure_comparisons: forest plot of the paired comparisons (scpert.stats)."""
    from scpert.plots import comparisons

    table = comparisons.data(_read(comparisons_path))
    _save(comparisons.draw(table), table, outputs)


def _prediction_figure(inputs, dataset, splits, methods, control, compute, columns):
    """Rows of ``compute(truth, predictions, control, test)`` per split (truth: the split's test
    conditions and controls in its genes), with ``dataset`` and ``split`` columns."""
    from scpert.data import io, schema

    adata = io.read_processed(inputs["h5ad"], control)
    frames = []
    preds = iter(inputs["preds"])
    for split, names, split_path, genes_path in zip(
        splits, methods, inputs["split"], inputs["genes"]
    ):
        table = io.read_split(split_path, adata.obs[schema.CONDITION], inputs["h5ad"])
        genes = io.read_genes(genes_path, adata.var_names, inputs["h5ad"])
        test = table.loc[table["split"] == "test", "condition"].tolist()
        keep = (
            adata.obs[schema.CONDITION].isin(test).to_numpy()
            | (adata.obs[schema.DRUG] == control).to_numpy()
        )
        truth = io.restrict_genes(adata[keep], genes, inputs["h5ad"])
        predictions = {m: io.read_prediction(next(preds), genes, test) for m in names}
        frames.append(
            compute(truth, predictions, control, test).assign(dataset=dataset, split=split)
        )
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True)[columns]


def figure_dose_response(
    inputs: dict,
    outputs: dict,
    dataset: str,
    splits: list[str],
    methods: list[list[str]],
    control: str,
) -> None:
    """Rule figure_dose_response: response size along the doses of the held-out drugs of the
    dataset's drug_ood splits. inputs: ``h5ad``, ``split`` and ``genes`` (one per split),
    ``preds`` (split-major: the split's ``methods`` in order)."""
    from scpert.plots import dose_response

    table = _prediction_figure(
        inputs, dataset, splits, methods, control, dose_response.effects, dose_response.COLUMNS
    )
    _save(dose_response.draw(table), table, outputs)


def figure_padj_density(
    inputs: dict,
    outputs: dict,
    dataset: str,
    splits: list[str],
    methods: list[list[str]],
    control: str,
) -> None:
    """Rule figure_padj_density: -log10 FDR densities of predicted DE for the truly DE and non-DE
    genes of the dataset's drug_ood splits (inputs as :func:`figure_dose_response`)."""
    from scpert.plots import padj_density

    table = _prediction_figure(
        inputs, dataset, splits, methods, control, padj_density.histograms, padj_density.COLUMNS
    )
    _save(padj_density.draw(table), table, outputs)


def figure_umap(
    inputs: dict,
    outputs: dict,
    dataset: str,
    splits: list[str],
    methods: list[list[str]],
    control: str,
) -> None:
    """Rule figure_umap: UMAP of predicted and true cells by cell line and logFC violins of the
    generative methods on the dataset's drug_ood splits (inputs as :func:`figure_dose_response`)."""
    from scpert.plots import umap

    table = _prediction_figure(inputs, dataset, splits, methods, control, umap.data, umap.COLUMNS)
    _save(umap.draw(table), table, outputs)


def figure_gsea(
    inputs: dict,
    outputs: dict,
    dataset: str,
    splits: list[str],
    methods: list[list[str]],
    control: str,
) -> None:
    """Rule figure_gsea: GSEA running ES and hits on predicted vs true logFC rankings of the
    dataset's drug_ood splits (inputs as :func:`figure_dose_response` plus ``gmt``)."""
    from functools import partial

    from scpert.plots import gsea

    compute = partial(gsea.enrichment, gene_sets=gsea.read_gmt(inputs["gmt"]))
    table = _prediction_figure(inputs, dataset, splits, methods, control, compute, gsea.COLUMNS)
    _save(gsea.draw(table), table, outputs)
