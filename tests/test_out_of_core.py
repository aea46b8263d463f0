"""Out-of-core preprocessing (scpert.data.out_of_core) equals the in-memory path exactly."""

from __future__ import annotations

import anndata as ad
import h5py
import numpy as np
import pytest

from scpert.data import out_of_core as ooc
from scpert.data import schema, sources
from scpert.data.preprocess import preprocess_counts, select_hvg
from scpert.data.splits import condition_table, make_split
from scpert.errors import ConfigError

from . import source_fixtures as fx
from .conftest import make_raw

QC = {"min_genes": 5, "min_cells": 3, "min_cells_per_condition": 12, "max_pct_mito": 30.0}
SETTINGS = ooc.Settings(**QC, max_cells_per_group=4, seed=1)


def run_pipeline(shards, folder, settings=SETTINGS, reader=None, block_groups=7):
    """Pass A, gather A, pass B, gather B over shard paths; returns (processed, stats path)."""
    reader = reader or (lambda p: ooc.h5ad_shard(str(p), batch_rows=50))
    qc = [folder / f"{i}.qc.h5" for i in range(len(shards))]
    for path, out in zip(shards, qc):
        ooc.qc_shard(reader(path), settings, out)
    plan = ooc.plan_shards(qc, settings, "control")
    plan.write(folder / "plan.h5")
    plan = ooc.Plan.read(folder / "plan.h5")
    outs = [folder / f"{i}.stats.h5" for i in range(len(shards))]
    for path, out in zip(shards, outs):
        ooc.preprocess_shard(reader(path), plan, out)
    ooc.gather_shards(
        outs,
        plan,
        folder / "processed.h5ad",
        folder / "stats.h5",
        "control",
        block_groups=block_groups,
    )
    return ad.read_h5ad(folder / "processed.h5ad"), folder / "stats.h5"


@pytest.fixture(scope="module")
def raw():
    data = make_raw(seed=3, n_genes=60, cells=15)
    data.var_names = ["MT-1", "MT-2", *data.var_names[2:]]
    return data


@pytest.fixture(scope="module")
def in_memory(raw):
    return preprocess_counts(raw, **QC)


def write_shards(raw, folder, n, seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    order = np.random.default_rng(seed).permutation(raw.n_obs)
    paths = []
    for i, idx in enumerate(np.array_split(order, n)):
        path = folder / f"shard{i}.h5ad"
        raw[np.sort(idx)].copy().write_h5ad(path)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def streamed(raw, tmp_path_factory):
    folder = tmp_path_factory.mktemp("ooc3")
    return run_pipeline(write_shards(raw, folder / "in", 3), folder)


def test_qc_normalisation_and_values_are_bit_identical(streamed, in_memory):
    sub, _ = streamed
    assert list(sub.var_names) == list(in_memory.var_names)  # min_cells: same genes
    assert set(sub.obs["condition"]) == set(in_memory.obs["condition"])  # min_cells_per_condition
    ref = in_memory[sub.obs_names]
    assert np.array_equal(sub.X.toarray(), ref.X.toarray())  # not approximately: the same bits
    assert np.array_equal(sub.layers["counts"].toarray(), ref.layers["counts"].toarray())
    for key in ("cell_line", "drug", "dose", "plate", "condition"):
        assert sub.obs[key].astype(str).tolist() == ref.obs[key].astype(str).tolist()
    schema.validate(sub, "processed.h5ad", kind="processed")


def test_subsample_is_the_smallest_hashes_of_each_group(streamed, in_memory):
    sub, _ = streamed
    obs = in_memory.obs.copy()
    obs["hash"] = ooc.cell_hashes(obs.index, SETTINGS.seed)
    expected = set(
        obs.sort_values("hash").groupby(["condition", "plate"], observed=True).head(4).index
    )
    assert set(sub.obs_names) == expected
    sizes = in_memory.obs.groupby(["condition", "plate"], observed=True).size()
    got = sub.obs.groupby(["condition", "plate"], observed=True).size()
    assert (got == np.minimum(sizes, 4)).all()


def test_subsample_with_groups_above_and_below_the_cap(raw, in_memory, tmp_path):
    settings = ooc.Settings(**QC, max_cells_per_group=10, seed=7)
    sub, _ = run_pipeline(write_shards(raw, tmp_path / "in", 2), tmp_path, settings)
    obs = in_memory.obs.copy()
    obs["hash"] = ooc.cell_hashes(obs.index, 7)
    sizes = obs.groupby(["condition", "plate"], observed=True).size()
    assert (sizes > 10).any() and (sizes < 10).any()  # both kinds of group
    expected = obs.sort_values("hash").groupby(["condition", "plate"], observed=True).head(10)
    assert set(sub.obs_names) == set(expected.index)


def test_group_statistics_are_the_pseudobulk_sums(streamed, in_memory):
    _, stats = streamed
    with h5py.File(stats, "r") as f:
        groups = ooc._read_table(f["groups"])
        n_cells, sum_x, sumsq_x, sum_norm = (
            f["n_cells"][()],
            f["sum_x"][()],
            f["sumsq_x"][()],
            f["sum_norm"][()],
        )
    key = in_memory.obs["condition"].astype(str) + "/" + in_memory.obs["plate"].astype(str)
    x = in_memory.X.toarray().astype(np.float64)
    for i, (cond, plate) in enumerate(zip(groups["condition"], groups["plate"])):
        rows = (key == f"{cond}/{plate}").to_numpy()
        assert n_cells[i] == rows.sum()
        np.testing.assert_allclose(sum_x[i], x[rows].sum(0), rtol=1e-12)
        np.testing.assert_allclose(sumsq_x[i], (x[rows].astype(np.float32) ** 2).sum(0), rtol=1e-6)
        np.testing.assert_allclose(sum_norm[i], np.expm1(x[rows]).sum(0), rtol=1e-6)
    assert n_cells.sum() == in_memory.n_obs


@pytest.mark.parametrize("flavor", ["seurat", "cell_ranger"])
@pytest.mark.parametrize("split_type", ["drug_ood", "cell_ood"])
def test_hvgs_equal_the_in_memory_selection(streamed, in_memory, flavor, split_type):
    _, stats = streamed
    split = make_split(
        condition_table(in_memory.obs, "control"), split_type, seed=0, test_fraction=0.3
    )
    want = select_hvg(in_memory, split, n_top_genes=20, flavor=flavor)
    got = ooc.select_hvg_from_stats(stats, split, n_top_genes=20, flavor=flavor)
    assert got["gene"].tolist() == want["gene"].tolist()
    assert got["rank"].tolist() == want["rank"].tolist()
    np.testing.assert_allclose(got["dispersion"], want["dispersion"], rtol=1e-9)
    every = ooc.select_hvg_from_stats(stats, split, n_top_genes=100, flavor=flavor)
    assert every["gene"].tolist() == list(in_memory.var_names)


def test_result_does_not_depend_on_the_sharding(raw, streamed, tmp_path):
    sub3, stats3 = streamed
    sub1, stats1 = run_pipeline(
        write_shards(raw, tmp_path / "in", 1, seed=5), tmp_path, block_groups=1000
    )
    assert set(sub1.obs_names) == set(sub3.obs_names)
    sub1 = sub1[sub3.obs_names]
    assert np.array_equal(sub1.X.toarray(), sub3.X.toarray())
    with h5py.File(stats1, "r") as a, h5py.File(stats3, "r") as b:
        for name in ooc.STATS:
            np.testing.assert_allclose(a[name][()], b[name][()], rtol=1e-12)


def test_processed_file_is_chunked_and_readable_backed(streamed):
    sub, stats = streamed
    path = stats.with_name("processed.h5ad")
    with h5py.File(path, "r") as f:
        assert f["X/data"].chunks is not None and f["X/data"].maxshape == (None,)
    backed = ad.read_h5ad(path, backed="r")
    np.testing.assert_array_equal(backed.X[2:5].toarray(), sub.X[2:5].toarray())
    assert backed.uns["out_of_core"]["max_cells_per_group"] == 4
    assert backed.uns["preprocess"]["min_cells"] == 3


def test_seurat_v3_is_refused_with_the_key(streamed, in_memory):
    _, stats = streamed
    split = make_split(condition_table(in_memory.obs, "control"), "drug_ood", seed=0)
    with pytest.raises(
        ConfigError, match="datasets.tahoe.hvg.flavor: 'seurat_v3' needs a second pass"
    ):
        ooc.select_hvg_from_stats(
            stats, split, n_top_genes=10, flavor="seurat_v3", key="datasets.tahoe.hvg.flavor"
        )


def test_tahoe_shards_stream_to_the_in_memory_result(tmp_path):
    shards, _, _ = fx.write_tahoe(tmp_path / "tahoe", n_shards=3, cells_per_group=10)
    folder = tmp_path / "tahoe"
    files = {
        "genes": folder / "gene_metadata.parquet",
        "samples": folder / "sample_metadata.parquet",
        "cell_lines": folder / "cell_line_metadata.parquet",
    }
    reader = sources.shard_reader(
        "tahoe", files, {"batch_rows": 16}, "control", "datasets.tahoe.load"
    )
    qc = {"min_genes": 3, "min_cells": 2, "min_cells_per_condition": 5, "max_pct_mito": 50.0}
    sub, stats = run_pipeline(
        shards, tmp_path, ooc.Settings(**qc, max_cells_per_group=6), reader=reader
    )
    whole = sources.load(
        "tahoe", {**files, "shards": [str(p) for p in shards]}, {}, "control", "d"
    ).adata
    ref = preprocess_counts(whole, **qc)
    assert ref.n_obs == whole.n_obs - 1  # the fixture's cell with one gene fails min_genes
    assert list(sub.var_names) == list(ref.var_names)
    assert np.array_equal(sub.X.toarray(), ref[sub.obs_names].X.toarray())
    assert sub.obs.groupby(["condition", "plate"], observed=True).size().max() == 6
    split = make_split(
        condition_table(ref.obs, "control"), "cell_ood", seed=0, test_cell_lines=["HepG2"]
    )
    want = select_hvg(ref, split, n_top_genes=15, flavor="seurat")
    assert (
        ooc.select_hvg_from_stats(stats, split, n_top_genes=15)["gene"].tolist()
        == want["gene"].tolist()
    )


def test_shards_with_different_genes_are_refused(raw, tmp_path):
    paths = write_shards(raw, tmp_path / "in", 2)
    other = ad.read_h5ad(paths[1])
    other.var_names = [f"X{i}" for i in range(other.n_vars)]
    other.write_h5ad(paths[1])
    for i, path in enumerate(paths):
        ooc.qc_shard(ooc.h5ad_shard(str(path)), SETTINGS, tmp_path / f"{i}.qc.h5")
    with pytest.raises(schema.SchemaError, match="the shard's genes differ"):
        ooc.plan_shards([tmp_path / "0.qc.h5", tmp_path / "1.qc.h5"], SETTINGS, "control")


def test_plan_without_controls_is_refused(raw, tmp_path):
    treated = raw[raw.obs["drug"] != "control"].copy()
    path = tmp_path / "treated.h5ad"
    treated.write_h5ad(path)
    ooc.qc_shard(ooc.h5ad_shard(str(path)), SETTINGS, tmp_path / "qc.h5")
    with pytest.raises(schema.SchemaError, match="no control cells labelled 'control'"):
        ooc.plan_shards([tmp_path / "qc.h5"], SETTINGS, "control", "datasets.x")


def test_large_h5ad_streams_backed_to_the_in_memory_result(tmp_path):
    """pertpy / mapped h5ads (PBMC, Replogle) stream in row batches, unannotated cells dropped."""
    path = tmp_path / "srivatsan_2020_sciplex3.h5ad"
    fx.write_pertpy_sciplex(path)
    options = {"plate": "replicate", "batch_rows": 7}
    reader = sources.shard_reader("pertpy", {}, options, "control", "datasets.s.load")
    qc = {"min_genes": 2, "min_cells": 2, "min_cells_per_condition": 3}
    sub, stats = run_pipeline(
        [path], tmp_path, ooc.Settings(**qc, max_cells_per_group=1000), reader=reader
    )
    loaded = sources.load("pertpy", {"h5ad": str(path)}, options, "control", "d").adata
    ref = preprocess_counts(loaded, **qc)
    assert set(sub.obs_names) == set(ref.obs_names)  # the cap does not bite: every cell
    assert np.array_equal(sub.X.toarray(), ref[sub.obs_names].X.toarray())
    table = sources.perturbations("pertpy", ["Belinostat", "control"], "control", {}, options, "d")
    assert table[["drug", "type"]].values.tolist() == [["Belinostat", "chemical"]]
    with pytest.raises(ConfigError, match="out_of_core needs a source that streams"):
        sources.shard_reader("gears", {}, {}, "control", "datasets.g.load")


def test_non_ascii_names_survive_the_intermediate_files(raw, tmp_path):
    data = raw.copy()
    data.obs["drug"] = data.obs["drug"].astype(str).str.replace("dA", "β-lapachone")
    data.obs_names = [f"zelle-é{i}" for i in range(data.n_obs)]
    sub, stats = run_pipeline(write_shards(data, tmp_path / "in", 1), tmp_path)
    assert "β-lapachone" in set(sub.obs["drug"]) and sub.obs_names[0].startswith("zelle-é")
    with h5py.File(stats, "r") as f:
        assert "β-lapachone" in set(ooc._read_table(f["groups"])["drug"])
