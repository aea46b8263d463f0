"""Rule steps of the experiment overlays (workflow/rules/experiments.smk, docs/experiments.md):
corrupt_dataset, diversity_dataset, experiment_table, figure_robustness, figure_diversity."""

from __future__ import annotations

import logging

from scpert import runtime
from scpert.data import io, schema

log = logging.getLogger(__name__)


def corrupt_dataset(h5ad_in, h5ad_out, kind: str, level: float, seed: int, control: str) -> None:
    """Rule corrupt_dataset: ``processed.h5ad`` with noise or extra sparsity at ``level``
    (:func:`scpert.experiments.corruption.corrupt`)."""
    from scpert.experiments import corruption

    adata = io.read_processed(h5ad_in, control)
    out = corruption.corrupt(adata, kind, level, seed)
    log.info(
        "%s %.2f: sparsity %.4f -> %.4f (%d cells x %d genes)",
        kind,
        level,
        corruption.sparsity(adata.X),
        corruption.sparsity(out.X),
        out.n_obs,
        out.n_vars,
    )
    runtime.write_h5ad(out, h5ad_out)


def diversity_dataset(
    h5ad_in,
    split_in,
    h5ad_out,
    split_out,
    axis: str,
    level: int,
    levels: list[int],
    budget_fraction: float,
    seed: int,
    control: str,
) -> None:
    """Rule diversity_dataset: the split's data with the training cells replaced by the
    identity-balanced subset of ``level`` identities of ``axis``
    (:func:`scpert.experiments.diversity.training_subset`), and its split table."""
    from scpert.experiments import diversity

    adata = io.read_processed(h5ad_in, control)
    split = io.read_split(split_in, adata.obs[schema.CONDITION], h5ad_in)
    try:
        rows, table = diversity.training_subset(
            adata.obs, split, axis, level, levels, budget_fraction, control, seed
        )
    except ValueError as err:
        raise runtime.InputError(f"{split_in}: {err}") from None
    out = adata[rows].copy()
    train = table["split"] == "train"
    log.info(
        "%s diversity %d: %d training cells of %d conditions (%d cells kept of %d)",
        axis,
        level,
        int(table.loc[train, "n_cells"].sum()),
        int(train.sum()),
        out.n_obs,
        adata.n_obs,
    )
    runtime.write_h5ad(out, h5ad_out)
    runtime.write_tsv(table, split_out)


def experiment_table(experiment: str, metrics_paths: list, variants: list[dict], out) -> None:
    """Rule experiment_table: the tidy table of an experiment (:mod:`scpert.experiments.tables`)."""
    from scpert.experiments.tables import experiment_table as build

    metrics = [
        io.read_tsv(p, "metrics table", ("method", "metric", "value"), dtype={"deg_set": str})
        for p in metrics_paths
    ]
    runtime.write_tsv(build(experiment, variants, metrics), out, float_format="%.10g")


def figure_robustness(table_path, outputs: dict) -> None:
    """Rule figure_robustness: MSE and PCC-delta against noise and sparsity (StateXDiff Fig. 8)."""
    from scpert.plots import robustness
    from scpert.plots.common import save

    data = robustness.data(_read(table_path))
    save(robustness.draw(data), outputs["pdf"], outputs["png"], data, outputs["tsv"])


def figure_diversity(table_path, outputs: dict) -> None:
    """Rule figure_diversity: metrics against the number of training identities (Fig. 9)."""
    from scpert.plots import diversity
    from scpert.plots.common import save

    data = diversity.data(_read(table_path))
    save(diversity.draw(data), outputs["pdf"], outputs["png"], data, outputs["tsv"])


def _read(path):
    return io.read_tsv(
        path, "experiment table", ("axis", "level", "method"), dtype={"deg_set": str}
    )


def screening(
    inputs: dict,
    methods: list[str],
    outputs: dict,
    line: str | None,
    pathway: str,
    direction: str,
    top_n: int,
    control: str,
) -> None:
    """Rule screening: pathway scores of every drug on a held-out line, observed and predicted by
    each method, ranked, with MoA enrichment among the top ``top_n`` (scpert.experiments.screening).

    inputs: ``h5ad``, ``split``, ``genes``, ``gmt`` (gene sets), ``drugs`` (drugs.tsv with ``moa``),
    ``preds`` (one per method). line: the held-out line; ``None`` = the first cell line of the
    split's test conditions."""
    import numpy as np

    from scpert.experiments import screening as screen_mod
    from scpert.plots import screening as plot
    from scpert.plots.common import save
    from scpert.priors.sources import read_gmt

    adata = io.read_processed(inputs["h5ad"], control)
    split = io.read_split(inputs["split"], adata.obs[schema.CONDITION], inputs["h5ad"])
    genes = io.read_genes(inputs["genes"], adata.var_names, inputs["h5ad"])
    test = split[split["split"] == "test"]
    if line is None:
        if test.empty:
            raise runtime.InputError(f"{inputs['split']}: no test conditions")
        line = str(sorted(test["cell_line"].astype(str))[0])
    gene_sets = read_gmt(inputs["gmt"])
    if pathway not in gene_sets:
        raise runtime.InputError(
            f"experiments.screening.pathway: '{pathway}' is not a gene set of {inputs['gmt']} "
            f"(e.g. {', '.join(list(gene_sets)[:5])})"
        )
    in_space = [genes.index(g) for g in gene_sets[pathway] if g in set(genes)]
    if not in_space:
        raise runtime.InputError(
            f"experiments.screening.pathway: no gene of '{pathway}' is among the split's genes"
        )
    truth = io.restrict_genes(adata, genes, inputs["h5ad"])
    is_test_line = truth.obs[schema.CONDITION].astype(str).isin(test["condition"].astype(str))
    is_ctrl = (truth.obs[schema.DRUG].astype(str) == control) & (
        truth.obs[schema.CELL_LINE].astype(str) == line
    )
    ctrl = truth[is_ctrl.to_numpy()].X
    control_mean = np.asarray(ctrl.mean(axis=0)).ravel()
    sources = {"observed": truth[is_test_line.to_numpy()]}
    for method, path in zip(methods, inputs["preds"]):
        sources[method] = io.read_h5ad(path)
    moa = io.read_drug_table(inputs["drugs"])["moa"].astype(str)
    try:
        ranking, enrichment = screen_mod.screen(
            sources, control_mean, np.array(in_space), moa, line, control, direction, top_n
        )
    except ValueError as err:
        raise runtime.InputError(f"experiments.screening: {err}") from None
    log.info(
        "screened %d drugs on %s (pathway %s, %d genes); top MoA observed: %s",
        int((ranking["source"] == "observed").sum()),
        line,
        pathway,
        len(in_space),
        enrichment[enrichment["source"] == "observed"].iloc[0]["moa"],
    )
    ranking.insert(0, "cell_line", line)
    ranking.insert(1, "pathway", pathway)
    runtime.write_tsv(ranking, outputs["ranking"], float_format="%.10g")
    runtime.write_tsv(enrichment, outputs["enrichment"], float_format="%.10g")
    data = plot.data(ranking, enrichment)
    save(plot.draw(data, top_n), outputs["pdf"], outputs["png"], data, outputs["tsv"])
