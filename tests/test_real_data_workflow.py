"""The real-data rules end to end on fixture files served over HTTP from 127.0.0.1: downloads
(sharded, checksum list, recorded checksums), loaders (pertpy Kang, a GEARS zip member), the
out-of-core Tahoe DAG (qc_shard -> plan_shards -> preprocess_shard -> gather_shards ->
select_hvg_streamed), CITE-seq and L1000 resources; and a wrong checksum failing cleanly."""

from __future__ import annotations

import gzip
import hashlib
import io
import zipfile

import anndata as ad
import pandas as pd
import pytest
import yaml

from scpert.data import sources
from scpert.data.preprocess import preprocess_counts, select_hvg

from . import source_fixtures as fx
from .conftest import REPO
from .http_fixture import FixtureServer
from .test_workflow import snakemake

pytestmark = pytest.mark.workflow

TAHOE_QC = {"min_genes": 3, "min_cells": 2, "min_cells_per_condition": 5, "max_pct_mito": 50.0}


def serve_fixtures(folder):
    """Write every fixture and serve it; returns (server, config)."""
    files = {}
    shards, _, _ = fx.write_tahoe(folder / "tahoe", n_shards=3, cells_per_group=10)
    for path in shards:
        files[f"/tahoe/data/{path.name}"] = path.read_bytes()
    for name in ("gene", "sample", "drug", "cell_line"):
        files[f"/tahoe/metadata/{name}_metadata.parquet"] = (
            folder / "tahoe" / f"{name}_metadata.parquet"
        ).read_bytes()
    fx.write_pertpy_kang(folder / "kang_2018.h5ad")
    files["/pertpy/kang_2018.h5ad"] = (folder / "kang_2018.h5ad").read_bytes()
    fx.write_gears(folder / "perturb_processed.h5ad")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.write(folder / "perturb_processed.h5ad", "norman/perturb_processed.h5ad")
    files["/dataverse/6154020"] = buf.getvalue()
    level5 = fx.write_level5(folder)
    gctx_gz = gzip.compress(level5["path"].read_bytes())
    files["/geo/GSE1_Level5.gctx.gz"] = gctx_gz
    files["/geo/GSE1_sig_info.txt.gz"] = (folder / "sig_info.txt.gz").read_bytes()
    files["/geo/GSE1_gene_info.txt"] = (folder / "gene_info.txt").read_bytes()
    sums = "".join(
        f"{hashlib.sha512(files[f'/geo/{n}']).hexdigest()}  {n}\n"
        for n in ("GSE1_Level5.gctx.gz", "GSE1_sig_info.txt.gz")
    )
    files["/geo/GSE1_SHA512SUMS.txt.gz"] = gzip.compress(sums.encode())
    fx.write_citeseq_tar(folder / "RAW.tar")
    files["/geo/GSE2_RAW.tar"] = (folder / "RAW.tar").read_bytes()
    server = FixtureServer(files=files).start()
    url = server.url
    config = {
        "seed": 0,
        "control_label": "control",
        "datasets": {
            "kang": {
                "source": "pertpy",
                "load": {
                    "files": {"h5ad": "kang_h5ad"},
                    "options": {"preset": "kang_2018", "batch_rows": 8},
                },
                "out_of_core": {"max_cells_per_group": 3},  # an h5ad streamed, a capped subsample
                "splits": ["kang_cells"],
                "preprocess": {"min_cells_per_condition": 2},
                "hvg": {"n_top_genes": 10, "flavor": "seurat"},
            },
            "norman": {
                "source": "gears",
                "load": {
                    "files": {
                        "h5ad": {
                            "download": "gears_norman",
                            "member": "norman/perturb_processed.h5ad",
                        }
                    }
                },
                "splits": ["drug_ood"],
            },
            "tahoe": {
                "source": "tahoe",
                "load": {
                    "files": {
                        "shards": "tahoe_shards",
                        "genes": "tahoe_genes",
                        "samples": "tahoe_samples",
                        "drugs": "tahoe_drugs",
                        "cell_lines": "tahoe_cell_lines",
                    },
                    "options": {"batch_rows": 16},
                },
                "out_of_core": {"max_cells_per_group": 6, "memory_mb": 1},
                "splits": ["cell_ood"],
                "preprocess": TAHOE_QC,
                "hvg": {"n_top_genes": 15, "flavor": "seurat"},
            },
        },
        "splits": {
            "cell_ood": {"type": "cell_ood", "test_cell_lines": ["HepG2"]},
            "kang_cells": {"type": "cell_ood", "test_cell_lines": ["B cells"]},
            "drug_ood": {"type": "drug_ood"},
        },
        "methods": {"base_control": {"preset": "tiny"}},
        "downloads": {
            "kang_h5ad": {"url": url("/pertpy/kang_2018.h5ad"), "file": "pertpy/kang_2018.h5ad"},
            "gears_norman": {"url": url("/dataverse/6154020"), "file": "gears/norman.zip"},
            "tahoe_shards": {
                "url": url("/tahoe/data/train-{shard}-of-00003.parquet"),
                "file": "tahoe/data/train-{shard}-of-00003.parquet",
                "shards": 3,
            },
            **{
                f"tahoe_{n}s" if n != "cell_line" else "tahoe_cell_lines": {
                    "url": url(f"/tahoe/metadata/{n}_metadata.parquet"),
                    "file": f"tahoe/metadata/{n}_metadata.parquet",
                }
                for n in ("gene", "sample", "drug", "cell_line")
            },
            "l1000_sums": {
                "url": url("/geo/GSE1_SHA512SUMS.txt.gz"),
                "file": "geo/GSE1_SHA512SUMS.txt.gz",
            },
            "l1000_level5": {
                "url": url("/geo/GSE1_Level5.gctx.gz"),
                "file": "geo/GSE1_Level5.gctx.gz",
                "checksum_list": "l1000_sums",
            },
            "l1000_sig_info": {
                "url": url("/geo/GSE1_sig_info.txt.gz"),
                "file": "geo/GSE1_sig_info.txt.gz",
                "checksum_list": "l1000_sums",
            },
            "l1000_gene_info": {
                "url": url("/geo/GSE1_gene_info.txt"),
                "file": "geo/GSE1_gene_info.txt",
                "size": len(files["/geo/GSE1_gene_info.txt"]),
            },
            "citeseq_raw": {"url": url("/geo/GSE2_RAW.tar"), "file": "geo/GSE2_RAW.tar"},
        },
        "citeseq": {
            "gse2": {"matrices": "citeseq_raw", "samples": {"GSM1_M0": "M0", "GSM2_M3": "M3"}}
        },
        "lincs": {
            "level5": {
                "gctx": {"download": "l1000_level5", "gunzip": True},
                "sig_info": "l1000_sig_info",
                "gene_info": "l1000_gene_info",
            }
        },
    }
    config["downloads"]["tahoe_genes"] = config["downloads"].pop("tahoe_genes")
    return server, config


TARGETS = (
    "results/kang/processed.h5ad",
    "results/kang/kang_cells/genes.tsv",
    "resources/raw/kang/drugs.tsv",
    "resources/raw/norman/drugs.tsv",
    "results/tahoe/cell_ood/genes.tsv",
    "resources/raw/tahoe/drugs.tsv",
    "resources/raw/citeseq/gse2/citeseq.h5ad",
    "resources/raw/lincs/level5.gctx",
)


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("real")
    server, config = serve_fixtures(folder / "fixtures")
    work = folder / "work"
    work.mkdir()
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    try:
        snakemake(*TARGETS, "--cores", "2", "-d", work, "--configfile", work / "config.yaml")
    finally:
        server.stop()
    return folder, work, server


def test_downloads_record_their_checksums(real_run):
    folder, work, server = real_run
    kang = work / "resources/downloads/pertpy/kang_2018.h5ad"
    assert kang.read_bytes() == (folder / "fixtures/kang_2018.h5ad").read_bytes()
    assert (
        (work / "resources/downloads/pertpy/kang_2018.h5ad.sha256")
        .read_text()
        .startswith("sha256:")
    )
    # files verified against the published list record nothing
    assert not (work / "resources/downloads/geo/GSE1_Level5.gctx.gz.sha256").exists()
    log = (work / "results/logs/download/geo/GSE1_Level5.gctx.gz.log").read_text()
    assert "published sha512 checksum from resources/downloads/geo/GSE1_SHA512SUMS.txt.gz" in log
    assert "sha512 verified" in log
    shards = sorted((work / "resources/downloads/tahoe/data").glob("*.parquet"))
    assert [p.name for p in shards] == [f"train-{i:05d}-of-00003.parquet" for i in range(3)]


def test_loaders_write_the_contract(real_run):
    _, work, _ = real_run
    processed = ad.read_h5ad(work / "results/kang/processed.h5ad")
    assert set(processed.obs["drug"]) == {"control", "stim"} and "counts" in processed.layers
    assert processed.obs.groupby(["condition", "plate"], observed=True).size().max() == 3
    kang = pd.read_csv(work / "resources/raw/kang/drugs.tsv", sep="\t")
    assert kang[["drug", "type"]].values.tolist() == [["stim", "protein"]]
    norman = pd.read_csv(work / "resources/raw/norman/drugs.tsv", sep="\t")
    assert norman["drug"].tolist() == ["CBL", "FOXA1", "KLF1"] and set(norman["type"]) == {
        "genetic"
    }


def test_out_of_core_dag_matches_the_in_memory_hvgs(real_run):
    folder, work, _ = real_run
    tahoe = folder / "fixtures/tahoe"
    files = {
        "shards": sorted(str(p) for p in tahoe.glob("train-*.parquet")),
        "genes": str(tahoe / "gene_metadata.parquet"),
        "samples": str(tahoe / "sample_metadata.parquet"),
        "cell_lines": str(tahoe / "cell_line_metadata.parquet"),
    }
    whole = preprocess_counts(sources.load("tahoe", files, {}, "control", "d").adata, **TAHOE_QC)
    split = pd.read_csv(work / "results/tahoe/splits/cell_ood.tsv", sep="\t", dtype=str)
    want = select_hvg(whole, split, n_top_genes=15, flavor="seurat")
    got = pd.read_csv(work / "results/tahoe/cell_ood/genes.tsv", sep="\t")
    assert got["gene"].tolist() == want["gene"].tolist()
    sub = ad.read_h5ad(work / "results/tahoe/processed.h5ad")
    assert sub.obs.groupby(["condition", "plate"], observed=True).size().max() == 6
    drugs = pd.read_csv(work / "resources/raw/tahoe/drugs.tsv", sep="\t")
    assert drugs["drug"].tolist() == ["Dabrafenib", "Trametinib"]


def test_resources_of_the_priors(real_run):
    _, work, _ = real_run
    cite = ad.read_h5ad(work / "resources/raw/citeseq/gse2/citeseq.h5ad")
    assert set(cite.obs["sample"]) == {"M0", "M3"} and list(cite.obsm["protein"].columns) == [
        "CD3",
        "CD19",
        "CD14",
    ]
    from scpert.priors import l1000

    gct = l1000.read_gct(work / "resources/raw/lincs/level5.gctx")
    assert gct.data.shape == (4, 7) and (gct.col_meta["pert_type"] == "trt_cp").all()


def test_wrong_checksum_fails_naming_the_url_and_leaves_nothing(tmp_path):
    data = b"fixture bytes\n" * 100
    server = FixtureServer(files={"/f.txt": data}).start()
    try:
        config = yaml.safe_load((REPO / "config/ci.yaml").read_text())
        config["downloads"] = {
            "f": {"url": server.url("/f.txt"), "file": "x/f.txt", "checksum": "md5:" + "0" * 32}
        }
        (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
        proc = snakemake(
            "resources/downloads/x/f.txt",
            "--cores",
            "1",
            "-d",
            tmp_path,
            "--configfile",
            tmp_path / "config.yaml",
            check=False,
        )
    finally:
        server.stop()
    assert proc.returncode != 0
    log = (tmp_path / "results/logs/download/x/f.txt.log").read_text()
    assert (
        f"{server.url('/f.txt')}: md5 {hashlib.md5(data).hexdigest()} differs from the expected {'0' * 32}"
        in log
    )
    assert list((tmp_path / "resources").rglob("*f.txt*")) == []  # no file, no partial file


def test_paper_config_resolves_the_whole_dag_without_data(tmp_path):
    """config/paper.yaml: download -> loaders / out-of-core shards -> methods -> tables, dry run."""
    from .test_workflow import job_counts

    out = snakemake("-n", "-d", tmp_path, "--configfile", REPO / "config/paper.yaml").stdout
    counts = job_counts(out)
    paper = yaml.safe_load((REPO / "config/paper.yaml").read_text())
    n_shards = paper["downloads"]["tahoe_shards"]["shards"]
    streamed = [n for n, d in paper["datasets"].items() if d.get("out_of_core")]
    assert "tahoe100m" in streamed and len(streamed) == 3  # Tahoe's shards; PBMC and Replogle
    # one job per Tahoe shard, one per streamed h5ad (PBMC, Replogle)
    assert counts["qc_shard"] == counts["preprocess_shard"] == n_shards + len(streamed) - 1
    assert counts["gather_shards"] == counts["plan_shards"] == len(streamed)
    in_memory = [n for n, d in paper["datasets"].items() if not d.get("out_of_core")]
    assert counts["import_dataset"] == counts["preprocess"] == len(in_memory)
    assert counts["download"] >= n_shards + 4  # the shards, Tahoe's metadata and the releases
    for rule in ("make_split", "train", "sample", "aggregate", "heatmap"):
        assert counts[rule] >= 1
    # each dataset's perturbation type: chemical (SMILES), genetic (Norman, Replogle), protein
    types = {name: d["perturbation_type"] for name, d in paper["datasets"].items()}
    assert set(types.values()) == {"chemical", "genetic", "protein"}
    assert types["pbmc"] == types["kang"] == "protein"
    assert types["norman"] == types["replogle"] == "genetic"
    # the four generative methods at their paper presets, each on its paper's splits, and every
    # method's job on every (dataset, split) it names
    generative = ("scppdm", "statexdiff", "perturbdiff", "scdfm")
    assert all(paper["methods"][m]["preset"] == "paper" for m in generative)
    pairs = [(name, split) for name, d in paper["datasets"].items() for split in d["splits"]]
    wanted = {
        m: [p for p in pairs if "splits" not in e or p[1] in e["splits"]]
        for m, e in paper["methods"].items()
    }
    assert all(wanted[m] for m in generative), {m: wanted[m] for m in generative}
    assert {p[0] for p in wanted["scdfm"]} == {"norman", "combosciplex"}
    assert {p[0] for p in wanted["perturbdiff"]} == {"tahoe100m", "pbmc", "replogle"}
    assert {p[0] for p in wanted["scppdm"]} == {"tahoe100m"}
    assert all(types[p[0]] == "chemical" for p in wanted["statexdiff"])  # its MDT priors
    assert counts["train"] == counts["sample"] == sum(map(len, wanted.values()))
    assert counts["pretrain_perturbdiff"] >= 1
    for rule in ("figure_radar", "figure_scatter", "figure_combinations", "figure_comparisons"):
        assert counts[rule] >= 1, rule
    # one evaluate job (a rule per dataset and split) for every configured split
    n_splits = sum(len(d["splits"]) for d in paper["datasets"].values())
    assert sum(n for rule, n in counts.items() if rule.startswith("evaluate_")) == n_splits


@pytest.mark.parametrize(
    "dataset, message",
    [
        (
            {"source": "pertpy", "splits": ["drug_ood"]},
            "config: datasets.x.load.files.h5ad is required for source 'pertpy'",
        ),
        (
            {
                "source": "gears",
                "splits": ["drug_ood"],
                "load": {"files": {"h5ad": "a.h5ad"}},
                "out_of_core": {},
            },
            "config: datasets.x.out_of_core: source 'gears' cannot be streamed",
        ),
        (
            {
                "source": "pertpy",
                "splits": ["drug_ood"],
                "load": {"files": {"h5ad": "a.h5ad"}},
                "out_of_core": {},
            },
            "config: datasets.x.hvg.flavor: 'seurat_v3' needs a second pass",
        ),
        (
            {
                "source": "gears",
                "splits": ["drug_ood"],
                "load": {"files": {"h5ad": {"download": "nothing", "member": "m"}}},
            },
            "config: datasets.x.load.files.h5ad.download: 'nothing' is not an entry of 'downloads'",
        ),
    ],
)
def test_bad_loader_config_fails_at_parse_time(tmp_path, dataset, message):
    config = yaml.safe_load((REPO / "config/ci.yaml").read_text())
    config["datasets"]["x"] = dataset
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    proc = snakemake("-n", "-d", tmp_path, "--configfile", tmp_path / "config.yaml", check=False)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr
