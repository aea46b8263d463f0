"""Rule steps of the data family: simulate_world, preprocess, make_split, select_hvg."""

from __future__ import annotations

import logging
from pathlib import Path

from scpert import runtime
from scpert.data import io, schema

log = logging.getLogger(__name__)


def simulate_world(params: dict, outdir, resources) -> None:
    """Rule simulate_world: every raw file of the synthetic world (scpert.data.simulate)."""
    from scpert.data.simulate import simulate_world as simulate

    simulate(params, Path(outdir), Path(resources))


def preprocess(
    counts_path,
    out_path,
    params: dict,
    control: str,
    drugs_path=None,
    *,
    input_form: str = "counts",
    perturbation_type: str | None = None,
    where: str = "the dataset",
) -> None:
    """Rule preprocess: raw counts -> ``processed.h5ad`` (QC, normalise, log1p, counts layer).

    input_form: ``counts`` or ``lognorm`` (``datasets.<name>.input``; a log-normalised matrix has
    its counts recovered first, :mod:`scpert.data.input_forms`). drugs_path: the dataset's
    perturbation table; it must have a row for every perturbation of the counts (those left after
    QC), of the declared ``perturbation_type`` (``datasets.<name>.perturbation_type``) when one
    is declared, and a valid SMILES for every chemical one (:func:`scpert.perturbations.
    check_structures`), so that bad structures are reported here, not when a method trains.
    where: the config entry named in errors (``datasets.<name>``).
    """
    from scpert.data.preprocess import preprocess_counts

    raw = io.read_h5ad(counts_path)
    if input_form == "lognorm":
        from scpert.data.input_forms import counts_from_lognorm

        raw.X = counts_from_lognorm(raw.X, str(counts_path))
        log.info(
            "%s: counts recovered from the log-normalised X (%s.input: lognorm)", counts_path, where
        )
    adata = preprocess_counts(raw, control=control, source=str(counts_path), **params)
    if drugs_path is not None:
        drugs = io.read_drug_table(
            drugs_path, adata.obs[schema.DRUG].unique(), counts_path, control
        )
        check_perturbations(drugs, str(drugs_path), perturbation_type, where)
    runtime.write_h5ad(adata, out_path)
    log.info("wrote %s: %d cells x %d genes", out_path, adata.n_obs, adata.n_vars)


def check_perturbations(drugs, source: str, perturbation_type: str | None, where: str) -> None:
    """The table's types (column ``type``, ``chemical`` where absent) match the declared
    ``perturbation_type``, and every chemical row has a valid SMILES."""
    from scpert.perturbations import CHEMICAL, TYPE_FIELD, check_structures, types_of

    kinds = types_of(drugs, source)
    if perturbation_type is not None:
        if TYPE_FIELD not in drugs.columns and perturbation_type != CHEMICAL:
            raise schema.SchemaError(
                f"{source}: column '{TYPE_FIELD}' is missing, but {where}.perturbation_type is "
                f"'{perturbation_type}' (a table without it is chemical); add the column "
                f"'{TYPE_FIELD}' with '{perturbation_type}' on every row"
            )
        other = kinds[kinds != perturbation_type]
        if len(other):
            raise schema.SchemaError(
                f"{source}: field '{TYPE_FIELD}' of drug '{other.index[0]}' is '{other.iloc[0]}', "
                f"but {where}.perturbation_type is '{perturbation_type}'"
            )
    check_structures(drugs, source)


def make_split(processed_path, drugs_path, out_path, params: dict, control: str) -> None:
    """Rule make_split: every condition -> train / val / test / exclude."""
    from scpert.data.splits import condition_table
    from scpert.data.splits import make_split as split_conditions

    obs = io.read_h5ad(processed_path, backed="r").obs
    drugs = io.read_drug_table(drugs_path, obs[schema.DRUG].unique(), processed_path, control)
    conditions = condition_table(obs, control)
    kwargs = {k: v for k, v in params.items() if k != "type"}
    table = split_conditions(conditions, params["type"], drug_moa=drugs["moa"].to_dict(), **kwargs)
    runtime.write_tsv(table, out_path)
    log.info("split %s: %s", params["type"], table["split"].value_counts().to_dict())


def select_hvg(
    processed_path, split_path, out_path, params: dict, control: str, ranking_path=None
) -> None:
    """Rule select_hvg: the split's evaluated genes (``out_path``, ``genes.tsv``) and every gene's
    variability rank (``ranking_path``, ``hvg_ranking.tsv``), fitted on its training cells only."""
    from scpert.data.preprocess import hvg_ranking, top_genes

    adata = io.read_processed(processed_path, control)
    split = io.read_split(split_path, adata.obs[schema.CONDITION], processed_path)
    ranking = hvg_ranking(adata, split, control=control, **params)
    genes = top_genes(ranking, params["n_top_genes"])
    runtime.write_tsv(genes, out_path)
    if ranking_path is not None:
        runtime.write_tsv(ranking, ranking_path)
    log.info("kept %d of %d genes", len(genes), len(ranking))
