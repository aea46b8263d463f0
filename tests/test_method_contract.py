"""The method contract (docs/architecture.md "Method protocol"), for every registered method and
every method variant of config/config.yaml.

Each method is fitted through the workflow's own seams (``scpert.steps.methods``: the training
data, the conditions to predict, the ``train`` and ``sample`` steps) on a small simulated world,
at its ``tiny`` preset overlaid with its spec's ``test_overrides`` (declared beside its presets)
and, for a variant, the variant's parameters. A method that registers inherits every test here.

Checked: the prediction follows the prediction schema with the requested cells per condition (per
condition and plate for methods whose spec sets ``predicts_plates``); save -> load predicts
identically; a second fit with the same seed (through the ``train`` step) predicts identically;
the order of the conditions does not change any condition's cells (up to float32 rounding of
batched arithmetic); the ``sample`` step writes the
same cells in the split's evaluated genes; validation conditions reach ``PerturbData.val`` and
never ``adata``; ``train_genes`` widens the training gene space and the prediction still comes
back in the split's genes.
"""

from __future__ import annotations

import functools
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import yaml

from scpert import layout, runtime, steps
from scpert.data import io, schema
from scpert.methods import available_methods, get_method, get_spec
from scpert.methods.base import Method, per_condition
from scpert.methods.registry import TRAIN_GENES
from scpert.steps.methods import (
    check_prediction,
    conditions_to_predict,
    setup_torch,
    training_data,
)

from .conftest import REPO

CONTROL = "control"
SEED = 3
MAX_CELLS = 8  # predicted cells per condition (shared among its plates)
N_EVAL_GENES = 200  # the split's genes; the world has 300
CONFIG = yaml.safe_load((REPO / "config/config.yaml").read_text())

#: the splits a method can be tested on, by split type (a config split restriction picks one)
SPLITS = {
    "drug_ood": {"type": "drug_ood", "seed": 0, "test_fraction": 0.3, "val_fraction": 0.3},
    "combo_seen2": {"type": "combo_seen2", "seed": 0, "test_fraction": 0.5},
}


def contract_entries() -> dict[str, dict]:
    """Name -> ``{"base", "params", "split"}``: every registered method, every config variant."""
    entries = {name: {"base": name, "params": {}, "restrict": None} for name in available_methods()}
    for name, entry in CONFIG["methods"].items():
        entries[name] = {
            "base": entry.get("base", name),
            "params": entry.get("params", {}),
            "restrict": entry.get("splits"),
        }
    for entry in entries.values():
        types = {CONFIG["splits"][s]["type"] for s in entry.pop("restrict") or ["drug_ood"]}
        entry["split"] = next((t for t in SPLITS if t in types), None)
        assert entry["split"], f"no contract split for split types {types}"
    return entries


ENTRIES = contract_entries()


def method_params(name: str) -> dict:
    entry = ENTRIES[name]
    spec = get_spec(entry["base"])
    return spec.resolve("tiny", {**spec.test_overrides, **entry["params"]})


# ------------------------------------------------------------------------- the world and priors
@pytest.fixture(scope="module")
def processed(world, tmp_path_factory):
    """The small simulated world (conftest ``world``), preprocessed; its folder of split files."""
    root = tmp_path_factory.mktemp("contract")
    steps.preprocess(
        world / "counts.h5ad",
        root / "processed.h5ad",
        {"min_genes": 10, "min_cells": 3, "min_cells_per_condition": 5},
        CONTROL,
    )
    return root


@functools.cache
def _split_files(root, world, split: str) -> dict[str, str]:
    """Split table, genes and HVG ranking of ``split`` (a key of :data:`SPLITS`), made once."""
    folder = root / split
    paths = {
        "h5ad": str(root / "processed.h5ad"),
        "drugs": str(world / "drugs.tsv"),
        "split": str(folder / "split.tsv"),
        "genes": str(folder / "genes.tsv"),
        "ranking": str(folder / "hvg_ranking.tsv"),
    }
    steps.make_split(paths["h5ad"], paths["drugs"], paths["split"], SPLITS[split], CONTROL)
    steps.select_hvg(
        paths["h5ad"],
        paths["split"],
        paths["genes"],
        {"n_top_genes": N_EVAL_GENES},
        CONTROL,
        ranking_path=paths["ranking"],
    )
    return paths


def build_latent(paths: dict, out_dir, world) -> None:
    settings = {
        "preset": "tiny",
        "params": {"hidden_dim": [32], "steps": 20, "labels_per_batch": 8, "cells_per_label": 4},
    }
    steps.finetune_latent(paths, out_dir, settings, CONTROL, seed=0, device="cpu", threads=1)


def build_graph(paths: dict, out_dir, world) -> None:
    steps.pretrain_graph(
        world / "drugs.tsv",
        world / "dti.tsv",
        world / "ppi.tsv",
        out_dir,
        {"preset": "tiny", "params": {"epochs": 5}},
        device="cpu",
    )


def build_mdt(paths: dict, out_dir, world) -> None:
    graph_dir = out_dir.parent / "graph"
    if not graph_dir.exists():
        build_graph(paths, graph_dir, world)
    steps.pretrain_mdt(
        world / "drugs.tsv",
        paths["split"],
        paths["genes"],
        world / "l1000.gctx",
        graph_dir,
        out_dir,
        {"preset": "tiny", "params": {"epochs": 3}},
        device="cpu",
    )


def _sibling(out_dir, name: str, paths: dict, world):
    """The folder of prior ``name`` beside ``out_dir``, built first when missing."""
    folder = out_dir.parent / name
    if not folder.exists():
        PRIOR_BUILDERS[name](paths, folder, world)
    return folder


def build_translator(paths: dict, out_dir, world) -> None:
    steps.train_translator(
        world / "citeseq.h5ad",
        paths["h5ad"],
        out_dir,
        {"preset": "tiny", "params": {"steps": 30}},
        CONTROL,
        device="cpu",
    )


def build_protein(paths: dict, out_dir, world) -> None:
    inputs = {
        **paths,
        "translator": _sibling(out_dir, "translator", paths, world),
        "latent": _sibling(out_dir, "latent", paths, world),
        "complexes": world / "complexes.tsv",
    }
    steps.infer_protein(inputs, out_dir, {}, CONTROL, device="cpu")


def build_vmcs(paths: dict, out_dir, world) -> None:
    inputs = {
        **paths,
        "protein": _sibling(out_dir, "protein", paths, world),
        "latent": _sibling(out_dir, "latent", paths, world),
    }
    steps.train_vmcs(
        inputs, out_dir, {"preset": "tiny", "params": {"epochs": 2}}, CONTROL, device="cpu"
    )


def build_perturbdiff_marginal(paths: dict, out_dir, world) -> None:
    """PerturbDiff's marginal prior with the contract test's perturbdiff network shape."""
    params = dict(get_spec("perturbdiff").test_overrides)
    inputs = {k: paths[k] for k in ("h5ad", "split", "genes", "drugs")}
    if get_spec("perturbdiff").resolve("tiny", params)["drug_features"] == "morgan_mdt":
        mdt_dir = out_dir.parent / "mdt"
        if not mdt_dir.exists():
            build_mdt(paths, mdt_dir, world)
        inputs["prior_mdt"] = str(mdt_dir)
    settings = {"preset": "tiny", "params": params}
    steps.pretrain_perturbdiff(inputs, out_dir, settings, CONTROL, 0, "cpu", threads=1)


@functools.cache
def _citeseq_files(world) -> dict[str, str]:
    """The world's CITE-seq set as a perturbation dataset, one treated line held out, with its
    latent prior (as config/statexdiff_protein_modality.yaml): the contract splits' cells have no
    measured proteins, so Fig. 3c's protein sources (scpert.priors.protein_sources) are built on
    this one (no contract entry uses them; tests/test_cell_state_priors.py checks them)."""
    folder = Path(world).parent / "contract_citeseq_set"
    folder.mkdir(exist_ok=True)
    paths = {
        "h5ad": str(folder / "processed.h5ad"),
        "split": str(folder / "split.tsv"),
        "genes": str(folder / "genes.tsv"),
    }
    filters = {"min_genes": 10, "min_cells": 3, "min_cells_per_condition": 5}
    steps.preprocess(world / "citeseq.h5ad", paths["h5ad"], filters, CONTROL)
    split = {"type": "cell_ood", "seed": 0, "test_fraction": 0.5}
    steps.make_split(paths["h5ad"], world / "drugs.tsv", paths["split"], split, CONTROL)
    steps.select_hvg(paths["h5ad"], paths["split"], paths["genes"], {"n_top_genes": 100}, CONTROL)
    build_latent(paths, folder / "latent", world)
    build_translator(paths, folder / "translator", world)
    return {**paths, "latent": str(folder / "latent"), "translator": str(folder / "translator")}


def build_protein_measured(paths: dict, out_dir, world) -> None:
    cite = _citeseq_files(world)
    steps.measure_protein({**cite, "citeseq": world / "citeseq.h5ad"}, out_dir, {}, CONTROL)


def build_translator_finetuned(paths: dict, out_dir, world) -> None:
    inputs = {**_citeseq_files(world), "citeseq": world / "citeseq.h5ad"}
    settings = {"preset": "tiny", "params": {"steps": 20}}
    steps.finetune_translator(inputs, out_dir, settings, CONTROL, device="cpu")


def build_protein_finetuned(paths: dict, out_dir, world) -> None:
    inputs = {
        **_citeseq_files(world),
        "translator": _sibling(out_dir, "translator_finetuned", paths, world),
        "complexes": world / "complexes.tsv",
    }
    steps.infer_protein(inputs, out_dir, {}, CONTROL, device="cpu")


def _build_vmcs_of(protein_name: str):
    def build(paths: dict, out_dir, world) -> None:
        inputs = {**_citeseq_files(world), "protein": _sibling(out_dir, protein_name, paths, world)}
        settings = {"preset": "tiny", "params": {"epochs": 2}}
        steps.train_vmcs(inputs, out_dir, settings, CONTROL, device="cpu")

    return build


#: how the contract test builds each prior of the layout (small settings, the rules' own steps)
PRIOR_BUILDERS = {
    "latent": build_latent,
    "graph": build_graph,
    "mdt": build_mdt,
    "translator": build_translator,
    "protein": build_protein,
    "vmcs": build_vmcs,
    "perturbdiff_marginal": build_perturbdiff_marginal,
    "protein_measured": build_protein_measured,
    "vmcs_measured": _build_vmcs_of("protein_measured"),
    "translator_finetuned": build_translator_finetuned,
    "protein_finetuned": build_protein_finetuned,
    "vmcs_finetuned": _build_vmcs_of("protein_finetuned"),
}


def test_every_prior_of_the_layout_has_a_builder():
    assert set(PRIOR_BUILDERS) == set(layout.PRIORS)


def test_fig3c_protein_source_builders_make_loadable_priors(world, tmp_path):
    """The builders of the TrueProt / TrueProt-FT priors (no contract entry uses them) write
    folders their readers accept, one row per untreated cell of the CITE-seq set."""
    from scpert.priors import protein, vmcs

    cells = {}
    for source in ("measured", "finetuned"):
        out = tmp_path / "priors" / f"vmcs_{source}"
        out.parent.mkdir(exist_ok=True)
        PRIOR_BUILDERS[f"vmcs_{source}"]({}, out, world)
        cells[source] = protein.read_cell_proteins(out.parent / f"protein_{source}")
        model = vmcs.load_vmcs(out)
        assert model.d_g == cells[source].g_p.shape[1]
    assert cells["measured"].obs_names == cells["finetuned"].obs_names
    assert cells["finetuned"].g_p.shape[1] == protein.EMBEDDING_DIM
    assert cells["measured"].g_p.shape[1] == len(cells["measured"].proteins)
    assert (tmp_path / "priors" / "translator_finetuned" / protein.TRANSLATOR_JSON).is_file()


@functools.cache
def _prior(root, world, split: str, name: str):
    folder = root / split / "priors" / name
    if not folder.exists():
        PRIOR_BUILDERS[name](_split_files(root, world, split), folder, world)
    return folder


# ------------------------------------------------------------------------------------ the fits
class Fitted:
    """One method fitted on its contract split: the in-memory model, its inputs and prediction."""

    def __init__(self, name: str, root, world, tmp):
        entry = ENTRIES[name]
        self.name, self.spec = name, get_spec(entry["base"])
        self.params = method_params(name)
        self.paths = dict(_split_files(root, world, entry["split"]))
        for prior in self.spec.required_priors(self.params):
            self.paths[f"prior_{prior}"] = str(_prior(root, world, entry["split"], prior))
        self.tmp = tmp
        self.data = self.training_data()
        method_cls = get_method(entry["base"])
        setup_torch(self.spec.uses_gpu, "cpu", 1, SEED)  # as the train and sample steps do
        self.method = method_cls(self.params, seed=SEED)
        self.method.genes = list(self.data.adata.var_names)
        self.method.fit(self.data, device="cpu")
        adata = io.read_processed(self.paths["h5ad"], CONTROL)
        self.split = io.read_split(self.paths["split"])
        self.controls = adata[(adata.obs[schema.DRUG] == CONTROL).to_numpy()]
        self.by_plate = conditions_to_predict(adata.obs, self.split, MAX_CELLS)
        self.conditions = (
            self.by_plate if self.spec.predicts_plates else per_condition(self.by_plate)
        )
        self.pred = self.predict(self.method)

    def training_data(self):
        data = training_data(
            self.paths["h5ad"],
            self.paths["split"],
            self.paths["genes"],
            self.paths["drugs"],
            CONTROL,
            ranking_path=self.paths["ranking"],
            train_genes=self.spec.train_genes(self.params),
        )
        data.priors = {
            k.removeprefix("prior_"): v for k, v in self.paths.items() if k.startswith("prior_")
        }
        return data

    def predict(self, method: Method, conditions: pd.DataFrame | None = None) -> ad.AnnData:
        controls = self.controls[:, method.genes].copy()
        conditions = self.conditions if conditions is None else conditions
        return method.predict(controls, conditions, seed=SEED)


@pytest.fixture(scope="module")
def fitted(processed, world, tmp_path_factory):
    cache: dict[str, Fitted] = {}

    def get(name: str) -> Fitted:
        if name not in cache:
            cache[name] = Fitted(name, processed, world, tmp_path_factory.mktemp(name))
        return cache[name]

    return get


def assert_same_prediction(a: ad.AnnData, b: ad.AnnData, exact: bool = True) -> None:
    """Same genes, cells and labels; X bitwise equal, or (``exact=False``) up to float32
    rounding, which batching the same rows in another order may change."""
    assert list(a.var_names) == list(b.var_names)
    assert list(a.obs_names) == list(b.obs_names)
    pd.testing.assert_frame_equal(
        a.obs.astype(str).reset_index(drop=True), b.obs.astype(str).reset_index(drop=True)
    )
    if exact:
        np.testing.assert_array_equal(_dense(a.X), _dense(b.X))
    else:
        np.testing.assert_allclose(_dense(a.X), _dense(b.X), rtol=1e-5, atol=1e-6)


def _dense(X) -> np.ndarray:
    return X.toarray() if hasattr(X, "toarray") else np.asarray(X)


NAMES = sorted(ENTRIES)


# ------------------------------------------------------------------------------------ contract
@pytest.mark.parametrize("name", NAMES)
def test_prediction_has_the_requested_cells_and_schema(fitted, name):
    f = fitted(name)
    assert len(f.by_plate) > f.by_plate["condition"].nunique()  # several plates per condition
    true_cells = f.split.set_index("condition")["n_cells"]
    wanted = f.by_plate.groupby("condition")["n_cells"].sum()
    assert wanted.eq(np.minimum(true_cells[wanted.index], MAX_CELLS)).all()
    check_prediction(f.pred, f.conditions, name, by_plate=f.spec.predicts_plates)
    assert list(f.pred.var_names) == f.method.genes == list(f.data.adata.var_names)
    for key in (schema.CELL_LINE, schema.DRUG, schema.DOSE, schema.PLATE, schema.CONDITION):
        assert key in f.pred.obs.columns, key
    # each cell is labelled with its condition's own cell line, drug and dose
    requested = f.conditions.drop_duplicates("condition").set_index("condition")
    for key in (schema.CELL_LINE, schema.DRUG):
        labels = requested.loc[f.pred.obs[schema.CONDITION].astype(str), key].to_numpy()
        assert (f.pred.obs[key].astype(str).to_numpy() == labels).all(), key
    assert f.pred.obs_names.is_unique
    assert {"method", "seed", "sampler"} <= set(f.pred.uns)


@pytest.mark.parametrize("name", NAMES)
def test_save_then_load_predicts_identically(fitted, name, tmp_path):
    f = fitted(name)
    f.method.save(tmp_path / "model")
    loaded = Method.load(tmp_path / "model", device="cpu")
    assert type(loaded) is type(f.method) and loaded.genes == f.method.genes
    assert_same_prediction(f.predict(loaded), f.pred)


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_through_the_train_step_predicts_identically(fitted, name, tmp_path):
    f = fitted(name)
    entry = {
        "name": name,
        "base": ENTRIES[name]["base"],
        "preset": "tiny",
        "params": f.params,
    }
    steps.train(f.paths, tmp_path / "model", entry, CONTROL, SEED, "cpu", threads=1)
    assert_same_prediction(f.predict(Method.load(tmp_path / "model")), f.pred)


@pytest.mark.parametrize("name", NAMES)
def test_condition_order_does_not_change_a_conditions_cells(fitted, name):
    f = fitted(name)
    shuffled = f.conditions.iloc[::-1].reset_index(drop=True)
    assert f.conditions["condition"].nunique() > 1
    other = f.predict(f.method, shuffled)
    for condition in f.conditions["condition"].unique():
        a = f.pred[f.pred.obs[schema.CONDITION].astype(str).to_numpy() == condition]
        b = other[other.obs[schema.CONDITION].astype(str).to_numpy() == condition]
        assert_same_prediction(a, b, exact=False)
    # nor does predicting a condition alone
    alone = f.conditions[f.conditions["condition"] == f.conditions["condition"].iloc[-1]]
    single = f.predict(f.method, alone.reset_index(drop=True))
    mask = f.pred.obs[schema.CONDITION].astype(str).to_numpy() == alone["condition"].iloc[0]
    assert_same_prediction(single, f.pred[mask], exact=False)


@pytest.mark.parametrize("name", NAMES)
def test_sample_step_writes_the_prediction_in_the_splits_genes(fitted, name, tmp_path):
    f = fitted(name)
    f.method.save(tmp_path / "model")
    out = tmp_path / "pred.h5ad"
    steps.sample(
        {**f.paths, "model": tmp_path / "model"}, out, CONTROL, SEED, "cpu", MAX_CELLS, name, 1
    )
    pred = ad.read_h5ad(out)
    assert list(pred.var_names) == io.read_genes(f.paths["genes"])
    assert pred.uns["method"] == name and pred.uns["base_method"] == ENTRIES[name]["base"]
    assert_same_prediction(pred, f.pred[:, list(pred.var_names)])


@pytest.mark.parametrize("name", NAMES)
def test_validation_conditions_are_held_apart(fitted, name):
    f = fitted(name)
    labels = f.split.set_index("condition")["split"]
    train = set(f.data.adata.obs[schema.CONDITION].astype(str))
    assert {labels[c] for c in train} == {"train"}
    if ENTRIES[name]["split"] == "drug_ood":  # its contract split has validation conditions
        assert f.data.val is not None and list(f.data.val.var_names) == f.method.genes
        assert set(f.data.val.obs[schema.CONDITION].astype(str)) == set(
            labels.index[labels == "val"]
        )
    else:
        assert f.data.val is None


# ----------------------------------------------- screening drugs absent from the training data
#: the methods of the screening overlay (config/screening.yaml): they must featurise unseen drugs
SCREENING = yaml.safe_load((REPO / "config/screening.yaml").read_text())["experiments"][
    "screening"
]["methods"]
#: methods without a structure encoder: they cannot predict a drug absent from training
NO_STRUCTURE = ("additive", "base_control", "context_mean", "perturb_mean", "train_mean")
#: methods whose drug features come from the structure alone: a renamed copy of a drug must be
#: predicted exactly as the drug itself
STRUCTURE_ONLY = ("base_reg", "base_mlp")


def _loaded(f, tmp_path) -> Method:
    """A fresh copy of the fitted model (the fixture's model stays untouched)."""
    f.method.save(tmp_path / "model")
    return Method.load(tmp_path / "model", device="cpu")


def _l1000_only(f) -> tuple[pd.DataFrame, list[str]]:
    drugs = io.read_drug_table(f.paths["drugs"])
    with_cells = set(io.read_processed(f.paths["h5ad"], CONTROL).obs[schema.DRUG].astype(str))
    only = [str(d) for d in drugs.index if str(d) not in with_cells]
    assert len(only) == 8  # PRIOR_WORLD n_l1000_only_drugs
    return drugs, only


@pytest.mark.parametrize("name", NAMES)
def test_add_perturbations_predicts_unseen_drugs_and_keeps_the_known_ones(fitted, name, tmp_path):
    from scpert.experiments.screening import screen_conditions

    f = fitted(name)
    method = _loaded(f, tmp_path)
    drugs, only = _l1000_only(f)
    try:
        added = method.add_perturbations(drugs, only, f.data.priors)
    except NotImplementedError as err:
        assert name in NO_STRUCTURE and name not in SCREENING, err
        assert "add_perturbations" in str(err)
        return
    assert name not in NO_STRUCTURE
    assert set(added) <= set(only)
    assert method.add_perturbations(drugs, only, f.data.priors) == []  # nothing twice
    # the drugs it knew keep their features: the test conditions predict the same cells
    assert_same_prediction(f.predict(method), f.pred)
    line = str(f.conditions["cell_line"].iloc[0])
    plate = str(f.by_plate["plate"].iloc[0]) if f.spec.predicts_plates else None
    screen = screen_conditions(only, line, "10", 3, plate)
    pred = f.predict(method, screen)
    check_prediction(pred, screen, name, by_plate=f.spec.predicts_plates)
    assert np.isfinite(_dense(pred.X)).all()


@pytest.mark.parametrize("name", STRUCTURE_ONLY)
def test_a_renamed_copy_of_a_drug_is_predicted_as_the_drug(fitted, name, tmp_path):
    """Features added at prediction time are those the drug gets at training time: a copy of a
    held-out drug under a new name (same SMILES) gets the same predicted pseudobulk delta (the
    cells themselves are drawn with a seed of the condition's name, which differs)."""
    f = fitted(name)
    method = _loaded(f, tmp_path)
    drugs = io.read_drug_table(f.paths["drugs"])
    single = f.conditions[~f.conditions["drug"].astype(str).str.contains(r"\+")]
    row = single.iloc[[0]].reset_index(drop=True)
    drug = str(row["drug"].iloc[0])
    copy = drugs.loc[[drug]].rename(index={drug: "renamed_copy"}).assign(drug="renamed_copy")
    assert method.add_perturbations(pd.concat([drugs, copy]), ["renamed_copy"]) == ["renamed_copy"]
    controls = f.controls[:, method.genes].copy()
    a = method.predict_deltas(controls, row)
    b = method.predict_deltas(controls, row.assign(drug="renamed_copy"))
    assert np.abs(a.to_numpy()).max() > 0
    np.testing.assert_array_equal(a.to_numpy(), b.to_numpy())


@pytest.mark.parametrize("name", [n for n in SCREENING if n in ENTRIES])
def test_screening_sample_step_predicts_every_drug(fitted, name, tmp_path):
    from scpert.steps.experiments import screening_sample

    f = fitted(name)
    f.method.save(tmp_path / "model")
    drugs, only = _l1000_only(f)
    out = tmp_path / "screen.h5ad"
    inputs = {**f.paths, "model": tmp_path / "model"}
    screening_sample(inputs, out, name, None, None, 4, CONTROL, SEED, "cpu")
    pred = ad.read_h5ad(out)
    screened = sorted(str(d) for d in drugs.index if str(d) != CONTROL)
    assert sorted(pred.obs[schema.DRUG].astype(str).unique()) == screened
    assert (pred.obs[schema.DRUG].astype(str).value_counts() == 4).all()
    test_lines = sorted(f.split.loc[f.split["split"] == "test", "cell_line"].astype(str))
    assert set(pred.obs[schema.CELL_LINE].astype(str)) == {test_lines[0]}
    assert set(pred.obs[schema.DOSE].astype(str)) == {"10"}  # the world's highest dose
    assert list(pred.var_names) == io.read_genes(f.paths["genes"])
    assert set(pred.uns["featurised_at_prediction"]) <= set(only)


def test_screening_sample_step_names_a_method_that_cannot_screen(fitted, tmp_path):
    from scpert.steps.experiments import screening_sample

    f = fitted("base_control")  # a mean baseline: nothing to featurise an unseen drug with
    f.method.save(tmp_path / "model")
    inputs = {**f.paths, "model": tmp_path / "model"}
    out = tmp_path / "screen.h5ad"
    with pytest.raises(runtime.InputError, match="experiments.screening.methods: 'base_control'"):
        screening_sample(inputs, out, "base_control", None, None, 4, CONTROL, SEED, "cpu")
    assert not out.exists()


# -------------------------------------------------------------- the training gene space seam
def test_train_genes_widen_the_training_space_but_not_the_prediction(processed, world, tmp_path):
    """``train_genes`` (reserved parameter): training data in N genes of the split's ranking,
    containing the split's genes; the sample step returns the split's genes only. Exercised with
    a method that declares the parameter: train_mean with ``train_genes`` added to its presets."""
    from scpert.methods import registry

    base = get_spec("train_mean")
    wide = registry.MethodSpec(
        "train_mean",
        base.module,
        {preset: {**params, TRAIN_GENES: 0} for preset, params in base.presets.items()},
    )
    paths = _split_files(processed, world, "drug_ood")
    eval_genes = io.read_genes(paths["genes"])
    params = wide.resolve("tiny", {TRAIN_GENES: 250})
    data = training_data(
        paths["h5ad"],
        paths["split"],
        paths["genes"],
        paths["drugs"],
        CONTROL,
        ranking_path=paths["ranking"],
        train_genes=wide.train_genes(params),
    )
    assert data.adata.n_vars == 250 and set(eval_genes) < set(data.adata.var_names)
    assert data.eval_genes == eval_genes and list(data.val.var_names) == list(data.adata.var_names)
    ranking = pd.read_csv(paths["ranking"], sep="\t").set_index("gene")["rank"]
    extra = [g for g in data.adata.var_names if g not in set(eval_genes)]
    outside = ranking.drop(list(data.adata.var_names))
    assert ranking[extra].max() < outside.min()  # the best-ranked of the other genes
    method = get_method("train_mean")(params, seed=SEED)
    method.genes = list(data.adata.var_names)
    method.fit(data)
    method.save(tmp_path / "model")
    steps.sample(
        {**paths, "model": tmp_path / "model"}, tmp_path / "pred.h5ad", CONTROL, SEED, "cpu", 5, "w"
    )
    pred = ad.read_h5ad(tmp_path / "pred.h5ad")
    assert list(pred.var_names) == eval_genes
    with pytest.raises(runtime.InputError, match="train_genes"):
        wide.resolve("tiny", {TRAIN_GENES: -1})


def test_conditions_to_predict_shares_the_cap_among_plates():
    obs = pd.DataFrame(
        {
            schema.CONDITION: ["a"] * 7 + ["b"] * 3 + ["c"] * 2,
            schema.PLATE: ["p1"] * 5 + ["p2"] * 2 + ["p1"] * 3 + ["p2"] * 2,
        }
    )
    split = pd.DataFrame(
        {
            "condition": ["a", "b", "c", "d"],
            "cell_line": ["L"] * 4,
            "drug": ["x", "y", "z", "w"],
            "dose": ["1"] * 4,
            "split": ["test", "test", "train", "test"],
        }
    )
    with pytest.raises(schema.SchemaError, match="without cells.*'d'"):
        conditions_to_predict(obs, split, 4)
    table = conditions_to_predict(obs, split.iloc[:3], 4)
    # a: 5 + 2 cells capped at 4 -> 20/7 = 2.86 and 8/7 = 1.14 -> 3 and 1; b: 3 cells, one plate
    assert table[["condition", "plate", "n_cells"]].values.tolist() == [
        ["a", "p1", 3],
        ["a", "p2", 1],
        ["b", "p1", 3],
    ]
    assert per_condition(table)[["condition", "n_cells"]].values.tolist() == [["a", 4], ["b", 3]]
