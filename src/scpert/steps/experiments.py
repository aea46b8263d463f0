"""Rule steps of the experiment overlays (workflow/rules/experiments.smk, docs/experiments.md):
corrupt_dataset, diversity_dataset, experiment_table, figure_robustness, figure_diversity,
screening_sample, screening."""

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


def screen_line_and_dose(adata, split, line: str | None, dose: str | None, control: str):
    """The screen's held-out line (``None``: the first cell line of the split's test conditions)
    and dose (``None``: the highest single-drug dose of the line's cells)."""
    import pandas as pd

    if line is None:
        test = split[split["split"] == "test"]
        if test.empty:
            raise runtime.InputError("experiments.screening: the split has no test conditions")
        line = str(sorted(test["cell_line"].astype(str))[0])
    if dose is None:
        obs = adata.obs
        drug = obs[schema.DRUG].astype(str)
        single = (obs[schema.CELL_LINE].astype(str) == line) & (drug != control)
        single &= ~drug.str.contains(r"\+")
        doses = pd.to_numeric(obs.loc[single, schema.DOSE].astype(str), errors="coerce")
        if doses.dropna().empty:
            raise runtime.InputError(
                f"experiments.screening.dose: no single-drug cells of line '{line}' to take the "
                "highest dose from; set the dose"
            )
        dose = schema.format_dose(float(doses.max()))
    return line, str(dose)


def screening_sample(
    inputs: dict,
    out_path,
    method_name: str,
    line: str | None,
    dose: str | None,
    cells_per_drug: int,
    control: str,
    seed: int,
    device: str,
) -> None:
    """Rule screening_sample: a trained model of the split predicts every drug of the drug table
    (the single-cell drugs and those without cells, e.g. the world's L1000-only drugs) on the
    held-out line at the screen dose, ``cells_per_drug`` cells each from the line's control cells
    (:func:`scpert.experiments.screening.screen_conditions`); chemicals the model has no features
    for are featurised first (:meth:`scpert.methods.base.Method.add_perturbations`). Writes
    ``pred.h5ad`` in the split's evaluated genes.

    inputs: ``model``, ``h5ad``, ``split``, ``genes``, ``drugs`` (drugs.tsv, all rows) and the
    method's prior folders ``prior_<name>`` (as the train step gets them)."""
    from pathlib import Path

    from scpert.experiments.screening import screen_conditions
    from scpert.methods.base import saved_method_class
    from scpert.steps.methods import check_prediction, setup_torch

    method_cls = saved_method_class(inputs["model"])
    spec = method_cls.spec()
    dev = setup_torch(spec.uses_gpu, device, None, seed)
    method = method_cls.load(inputs["model"], device=dev)
    adata = io.read_processed(inputs["h5ad"], control)
    split = io.read_split(inputs["split"], adata.obs[schema.CONDITION], inputs["h5ad"])
    genes = io.read_genes(inputs["genes"], adata.var_names, inputs["h5ad"])
    line, dose = screen_line_and_dose(adata, split, line, dose, control)
    drugs = io.read_drug_table(inputs["drugs"])
    names = [str(d) for d in drugs.index if str(d) != control]
    try:
        priors = {k[len("prior_") :]: Path(v) for k, v in inputs.items() if k.startswith("prior_")}
        added = method.add_perturbations(drugs, names, priors)
    except NotImplementedError as err:
        raise runtime.InputError(
            f"experiments.screening.methods: '{method_name}' cannot screen drugs absent from its "
            f"training data ({err})"
        ) from None
    is_ctrl = (adata.obs[schema.DRUG].astype(str) == control) & (
        adata.obs[schema.CELL_LINE].astype(str) == line
    )
    if not is_ctrl.any():
        raise runtime.InputError(f"{inputs['h5ad']}: no control cells of cell line '{line}'")
    controls = io.restrict_genes(adata[is_ctrl.to_numpy()], method.genes, inputs["h5ad"]).copy()
    plate = None
    if spec.predicts_plates:
        plate = str(controls.obs[schema.PLATE].astype(str).value_counts().index[0])
    conditions = screen_conditions(names, line, dose, cells_per_drug, plate)
    log.info(
        "%s: screening %d drugs on %s at dose %s (%d featurised at prediction time), %d cells "
        "each from %d control cells",
        method_name,
        len(conditions),
        line,
        dose,
        len(added),
        cells_per_drug,
        controls.n_obs,
    )
    pred = method.predict(controls, conditions, seed=seed)
    pred = pred[:, genes].copy() if list(pred.var_names) != genes else pred
    pred.uns["method"] = method_name
    pred.uns["base_method"] = method.name
    pred.uns["seed"] = int(seed)
    pred.uns["featurised_at_prediction"] = list(added)
    pred.uns.setdefault("sampler", "none")
    check_prediction(pred, conditions, f"{method_name} screen", by_plate=spec.predicts_plates)
    pred.strings_to_categoricals()
    runtime.write_h5ad(pred, out_path)


def screening(
    inputs: dict,
    methods: list[str],
    outputs: dict,
    line: str | None,
    pathway: str,
    direction: str,
    top_n: int,
    control: str,
    dose: str | None = None,
) -> None:
    """Rule screening: pathway scores of every drug on a held-out line, observed and predicted by
    each method, ranked, with MoA enrichment among the top ``top_n`` (scpert.experiments.screening).

    inputs: ``h5ad``, ``split``, ``genes``, ``gmt`` (gene sets), ``drugs`` (drugs.tsv with ``moa``),
    ``preds`` (one per method: its screen of every drug, rule screening_sample), optionally
    ``l1000`` (the L1000 signatures, scored as source ``l1000``). line, dose: as in
    :func:`screen_line_and_dose` (the L1000 score is taken at ``dose``)."""
    import numpy as np

    from scpert.experiments import screening as screen_mod
    from scpert.plots import screening as plot
    from scpert.plots.common import save
    from scpert.priors.sources import read_gmt

    adata = io.read_processed(inputs["h5ad"], control)
    split = io.read_split(inputs["split"], adata.obs[schema.CONDITION], inputs["h5ad"])
    genes = io.read_genes(inputs["genes"], adata.var_names, inputs["h5ad"])
    test = split[split["split"] == "test"]
    line, dose = screen_line_and_dose(adata, split, line, dose, control)
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
    drug_table = io.read_drug_table(inputs["drugs"])
    moa = drug_table["moa"].astype(str)
    has_cells = {
        c for d in adata.obs[schema.DRUG].astype(str).unique() for c in schema.components(d)
    }
    l1000_only = [d for d in map(str, drug_table.index) if d not in has_cells and d != control]
    scores = {}
    try:
        if inputs.get("l1000"):
            from scpert.data.sources.lincs import read_l1000

            scores["l1000"] = screen_mod.l1000_scores(
                read_l1000(inputs["l1000"]), gene_sets[pathway], float(dose)
            )
        ranking, enrichment = screen_mod.screen(
            sources,
            control_mean,
            np.array(in_space),
            moa,
            line,
            control,
            direction,
            top_n,
            scores=scores,
            l1000_only=l1000_only,
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
