"""Config validation errors: one line naming the key (scpert.workflow_config.schema_error_message)."""

from __future__ import annotations

import copy

import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from scpert.workflow_config import ConfigError, resolve_config, schema_error_message

from .conftest import REPO

SCHEMA = str(REPO / "config/schema.yaml")
CI = yaml.safe_load((REPO / "config/ci.yaml").read_text())


def message(edit) -> str:
    config = copy.deepcopy(CI)
    edit(config)
    with pytest.raises(WorkflowError) as err:
        validate(config, SCHEMA)
    text = schema_error_message(err.value)
    assert text is not None and "\n" not in text
    return text


def test_unknown_keys_name_their_allowed_siblings():
    assert message(lambda c: c.update(outputs=1)) == (
        "outputs: unknown key (allowed at the top level: seed, seeds, control_label, device, "
        "benchmark, datasets, splits, methods, evaluation, figures, priors, latent, "
        "perturbdiff_pretrain, downloads, "
        "citeseq, lincs, experiments, resources)"
    )
    assert message(lambda c: c["datasets"]["synthetic"]["hvg"].update(n_top=5)) == (
        "datasets.synthetic.hvg.n_top: unknown key (allowed under datasets.synthetic.hvg: "
        "n_top_genes, flavor)"
    )


def test_values_types_and_required_keys():
    assert message(lambda c: c.update(device="gpu")) == (
        "device: 'gpu' is not allowed (allowed: auto, cpu, cuda)"
    )
    assert message(lambda c: c["evaluation"].update(max_cells="all")) == (
        "evaluation.max_cells: expected integer, got str 'all'"
    )
    assert message(lambda c: c["datasets"]["synthetic"].pop("source")) == (
        "datasets.synthetic.source: required key is missing"
    )
    assert message(lambda c: c["evaluation"].update(max_cells=3)) == (
        "evaluation.max_cells: 3 is less than the minimum of 10"
    )
    assert message(lambda c: c["evaluation"].update(protocols=["scperturbench", "gears"])) == (
        "evaluation.protocols[1]: 'gears' is not allowed (allowed: scperturbench, celleval, "
        "scppdm, systema)"
    )
    assert message(lambda c: c["datasets"].update({"my data": c["datasets"]["synthetic"]})) == (
        "datasets: 'my data' does not match the pattern ^[A-Za-z0-9][A-Za-z0-9_.-]*$"
    )


def test_other_errors_are_left_alone():
    assert schema_error_message(WorkflowError("no schema involved")) is None


def test_defaults_are_filled_in():
    config = copy.deepcopy(CI)
    validate(config, SCHEMA)
    assert (
        config["resources"]["mem_mb"] == 4000 and config["splits"]["drug_ood"]["val_fraction"] == 0
    )


def test_h5ad_dataset_files_must_exist(tmp_path, monkeypatch):
    config = copy.deepcopy(CI)
    config["datasets"] = {
        "own": {"source": "h5ad", "counts": "c.h5ad", "drugs": "d.tsv", "splits": ["drug_ood"]}
    }
    validate(config, SCHEMA)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"^datasets\.own\.counts: file not found: c\.h5ad$"):
        resolve_config(config)
    (tmp_path / "c.h5ad").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"^datasets\.own\.drugs: file not found: d\.tsv$"):
        resolve_config(config)
    (tmp_path / "d.tsv").write_text("drug\n")
    assert resolve_config(config).jobs
