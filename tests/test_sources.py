"""Loaders of the published datasets (scpert.data.sources) on fixtures in each source's format."""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import scipy.sparse as sp

from scpert.data import schema, sources
from scpert.data.schema import SchemaError
from scpert.data.sources import citeseq, lincs, tahoe
from scpert.errors import ConfigError
from scpert.priors import l1000

from . import source_fixtures as fx


# ------------------------------------------------------------------------------------------ Tahoe
@pytest.fixture(scope="module")
def tahoe_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tahoe")
    shards, counts, obs = fx.write_tahoe(folder, n_shards=2)
    files = {
        "shards": [str(p) for p in shards],
        "genes": str(folder / "gene_metadata.parquet"),
        "samples": str(folder / "sample_metadata.parquet"),
        "drugs": str(folder / "drug_metadata.parquet"),
        "cell_lines": str(folder / "cell_line_metadata.parquet"),
    }
    return folder, files, counts, obs


def test_tahoe_tokens_map_to_genes_and_the_marker_is_dropped(tahoe_data):
    folder, files, counts, obs = tahoe_data
    raw = pq.read_table(files["shards"][0]).to_pandas()
    assert raw["genes"][0][0] == 1 and raw["expressions"][0][0] == -2  # the released marker
    loaded = sources.load("tahoe", files, {}, "control", "datasets.t.load")
    adata = loaded.adata
    np.testing.assert_array_equal(adata.X.toarray(), counts)  # every token back in its gene column
    assert list(adata.var_names[:3]) == ["MT-CO1", "MT-ND1", "GENE2"]
    assert adata.obs_names[0] == obs["BARCODE_SUB_LIB_ID"].iloc[0]


def test_tahoe_obs_follow_the_contract(tahoe_data):
    _, files, _, obs = tahoe_data
    adata = sources.load("tahoe", files, {}, "control", "datasets.t.load").adata
    by_sample = pd.DataFrame(
        {
            "sample": obs["sample"].to_numpy(),
            "drug": adata.obs["drug"].to_numpy(),
            "dose": adata.obs["dose"].to_numpy(),
        }
    )
    first = by_sample.groupby("sample").first()
    assert first.loc["smp_1"].tolist() == ["control", "0"]  # DMSO_TF is the control
    assert first.loc["smp_2"].tolist() == ["Dabrafenib", "0.05"]
    assert first.loc["smp_3"].tolist() == ["Dabrafenib", "0.5"]  # 500 nM in uM
    assert first.loc["smp_4"].tolist() == ["Trametinib", "5"]
    assert set(adata.obs["cell_line"]) == {"A549", "HepG2", "MCF7"}  # Cellosaurus ids named
    assert set(adata.obs["plate"]) == {"plate1", "plate2"}
    schema.validate(adata, "tahoe", kind="raw")


def test_tahoe_perturbation_table(tahoe_data):
    _, files, _, _ = tahoe_data
    table = sources.load("tahoe", files, {}, "control", "datasets.t.load").perturbations
    assert table["drug"].tolist() == ["Dabrafenib", "Trametinib"]
    assert table.set_index("drug").loc["Dabrafenib", "targets"] == "BRAF;RAF1"
    assert table.set_index("drug").loc["Trametinib", "moa"] == "MEK inhibitor"
    assert set(table["type"]) == {"chemical"}


def test_tahoe_unknown_token_names_the_shard(tmp_path):
    genes = fx.tahoe_genes(5)
    genes.to_parquet(tmp_path / "genes.parquet")
    shard = tmp_path / "bad.parquet"
    obs = pd.DataFrame(
        {
            "drug": ["DMSO_TF"],
            "sample": ["smp_1"],
            "cell_line_id": ["CVCL_0023"],
            "plate": ["plate1"],
        }
    )
    tahoe.write_shard(
        shard, sp.csr_matrix(np.ones((1, 2), dtype=np.float32)), obs, np.array([3, 999])
    )
    samples = tahoe.read_samples(_samples(tmp_path))
    with pytest.raises(
        SchemaError, match=rf"{shard}: token ids \[999\] are not in the gene metadata"
    ):
        tahoe.read_shard(shard, tahoe.TahoeGenes.read(tmp_path / "genes.parquet"), samples)


def _samples(folder):
    path = folder / "samples.parquet"
    pd.DataFrame(
        {"sample": ["smp_1"], "drugname_drugconc": ["[('DMSO_TF', 0.0, 'uM')]"]}
    ).to_parquet(path)
    return path


def test_tahoe_missing_column_and_bad_drugconc(tmp_path):
    pq.write_table(pa.table({"genes": [[1, 3]], "drug": ["x"]}), tmp_path / "s.parquet")
    with pytest.raises(SchemaError, match="column 'expressions' is missing"):
        next(tahoe.iter_batches(tmp_path / "s.parquet"))
    with pytest.raises(SchemaError, match="has unit 'mg'"):
        tahoe.parse_drugconc("[('A', 1.0, 'mg')]", "sample_metadata")
    assert tahoe.parse_drugconc("[('A', 1.0, 'uM'), ('B', 20.0, 'nM')]", "x") == [
        ("A", 1.0),
        ("B", 0.02),
    ]


# ---------------------------------------------------------------------------------- scPerturBench
def test_scperturbench_chemical_reads_cov_drug_dose_name(tmp_path):
    path = tmp_path / "filter_hvg5000_logNor.h5ad"
    src = fx.write_scperturbench_chemical(path)
    loaded = sources.load(
        "scperturbench", {"h5ad": str(path)}, {"kind": "chemical"}, "control", "d"
    )
    obs = loaded.adata.obs
    np.testing.assert_array_equal(
        loaded.adata.X.toarray(), src.layers["counts"].toarray()
    )  # raw counts
    row = obs.loc[src.obs_names[src.obs["condition"] == "Dex+Panobinostat"][0]]
    assert (row["cell_line"], row["drug"], row["dose"]) == ("A549", "Dex+Panobinostat", "0.1+1")
    assert obs.loc["cell0", "drug"] == "control" and obs.loc["cell0", "dose"] == "0"
    table = loaded.perturbations.set_index("drug")
    assert (
        table.loc["Dex", "smiles"] == "C[C@@H]1C"
        and table.loc["Panobinostat", "smiles"] == "ONC(=O)C=C"
    )
    assert list(table.index) == ["Dex", "Panobinostat"]


def test_scperturbench_key_not_matching_context_is_named(tmp_path):
    path = tmp_path / "bad.h5ad"
    adata = fx.write_scperturbench_chemical(path)
    adata.obs.loc["cell3", "cov_drug_dose_name"] = "K562_control_1.0"  # a cell typed A549
    adata.write_h5ad(path)
    with pytest.raises(
        SchemaError,
        match=r"value 'K562_control_1.0' is not '<cell_type>_<drug>_<dose>' \(its cell_type is 'A549'\)",
    ):
        sources.load("scperturbench", {"h5ad": str(path)}, {}, "control", "d")


def test_scperturbench_cellular_needs_a_declared_type(tmp_path):
    path = tmp_path / "kang.h5ad"
    fx.write_scperturbench_cellular(path)
    with pytest.raises(
        SchemaError, match=r"datasets.kang.load.options.type: declare the perturbation type"
    ):
        sources.load(
            "scperturbench",
            {"h5ad": str(path)},
            {"kind": "cellular"},
            "control",
            "datasets.kang.load",
        )
    loaded = sources.load(
        "scperturbench",
        {"h5ad": str(path)},
        {"kind": "cellular", "type": "protein"},
        "control",
        "x",
    )
    assert set(loaded.adata.obs["cell_line"]) == {"CD4T", "B", "NK"}
    assert set(loaded.adata.obs["drug"]) == {"control", "stimulated"}
    assert set(loaded.adata.obs.loc[loaded.adata.obs["drug"] == "stimulated", "dose"]) == {"1"}
    assert loaded.perturbations.to_dict("records") == [
        {"drug": "stimulated", "smiles": "", "moa": "", "targets": "", "type": "protein"}
    ]


def test_log_normalised_only_is_refused_with_the_file(tmp_path):
    path = tmp_path / "lognorm.h5ad"
    adata = fx.write_scperturbench_chemical(path)
    del adata.layers["counts"]
    adata.write_h5ad(path)
    with pytest.raises(
        SchemaError,
        match=rf"{path}: X does not hold raw integer counts and there is no layers\['counts'\] "
        r"\(it looks log-normalised: declare it with datasets.<name>.input: lognorm",
    ):
        sources.load("scperturbench", {"h5ad": str(path)}, {}, "control", "d")
    # declared (datasets.<name>.input: lognorm, passed to the loader as option input): the
    # counts are recovered from X
    src = fx.write_scperturbench_chemical(tmp_path / "with_counts.h5ad")
    loaded = sources.load(
        "scperturbench", {"h5ad": str(path)}, {"input": "lognorm"}, "control", "d"
    )
    np.testing.assert_array_equal(loaded.adata.X.toarray(), src.layers["counts"].toarray())


def test_side_table_smiles_win_over_the_obs_column(tmp_path):
    """scPerturBench and mapped sources merge obs SMILES and files.drugs with one function."""
    path = tmp_path / "filter_hvg5000_logNor.h5ad"
    fx.write_scperturbench_chemical(path)
    side = tmp_path / "drugs.csv"
    side.write_text("drug,smiles,moa\nDex,CC(=O)O,glucocorticoid\n")
    files = {"h5ad": str(path), "drugs": str(side)}
    table = sources.load("scperturbench", files, {}, "control", "d").perturbations
    table = table.set_index("drug")
    assert table.loc["Dex", "smiles"] == "CC(=O)O" and table.loc["Dex", "moa"] == "glucocorticoid"
    assert table.loc["Panobinostat", "smiles"] == "ONC(=O)C=C"  # from obs['SMILES']


# ------------------------------------------------------------------------------------------ GEARS
def test_gears_norman_conditions(tmp_path):
    path = tmp_path / "perturb_processed.h5ad"
    src = fx.write_gears(path)
    loaded = sources.load("gears", {"h5ad": str(path)}, {}, "control", "d")
    obs = loaded.adata.obs
    mapping = dict(zip(src.obs["condition"], obs["drug"]))
    assert mapping == {
        "ctrl": "control",
        "CBL+ctrl": "CBL",
        "ctrl+KLF1": "KLF1",
        "CBL+KLF1": "CBL+KLF1",
        "FOXA1+ctrl": "FOXA1",
    }
    assert dict(zip(obs["drug"], obs["dose"])) == {
        "control": "0",
        "CBL": "1",
        "KLF1": "1",
        "CBL+KLF1": "1+1",
        "FOXA1": "1",
    }
    assert list(loaded.adata.var_names[:3]) == ["CBL", "CNN1", "FOXA1"]  # symbols, not Ensembl ids
    table = loaded.perturbations
    assert table["drug"].tolist() == ["CBL", "FOXA1", "KLF1"]
    assert table["targets"].tolist() == ["CBL", "FOXA1", "KLF1"] and set(table["type"]) == {
        "genetic"
    }


# ----------------------------------------------------------------------------------------- pertpy
def test_pertpy_scperturb_units_side_table_and_unannotated_cells(tmp_path, caplog):
    path = tmp_path / "srivatsan_2020_sciplex3.h5ad"
    fx.write_pertpy_sciplex(path)
    fx.chemcpa_smiles_csv(tmp_path / "smiles.csv")
    with caplog.at_level(logging.INFO, logger="scpert"):
        loaded = sources.load(
            "pertpy",
            {"h5ad": str(path), "drugs": str(tmp_path / "smiles.csv")},
            {"plate": "replicate"},
            "control",
            "d",
        )
    obs = loaded.adata.obs
    assert loaded.adata.n_obs == 8 * 2 + 2 * 2 * 2 * 6  # 3 cells without labels dropped
    assert set(obs.loc[obs["drug"] == "Belinostat", "dose"]) == {"0.01", "1"}  # nM -> uM
    assert set(obs["plate"]) == {"rep1", "rep2"}
    table = loaded.perturbations.set_index("drug")
    assert table.loc["Dacinostat", "moa"] == "Epigenetic" and table.loc[
        "Belinostat", "smiles"
    ].startswith("ONC(=O)")
    assert "3 of 67 cells have no context or perturbation label" in caplog.text


def test_pertpy_kang_is_a_cytokine_dataset(tmp_path):
    path = tmp_path / "kang_2018.h5ad"
    fx.write_pertpy_kang(path)
    loaded = sources.load("pertpy", {"h5ad": str(path)}, {"preset": "kang_2018"}, "control", "d")
    assert set(loaded.adata.obs["drug"]) == {"control", "stim"}
    assert set(loaded.adata.obs["plate"]) == {"patient_101", "patient_1015"}
    assert loaded.perturbations["type"].tolist() == ["protein"]


def test_mapped_needs_its_columns_and_names_unknown_options(tmp_path):
    path = tmp_path / "kang_2018.h5ad"
    fx.write_pertpy_kang(path)
    with pytest.raises(SchemaError, match="d.options.perturbation is required for source 'mapped'"):
        sources.load(
            "mapped",
            {"h5ad": str(path)},
            {"context": "cell_type", "type": "protein"},
            "control",
            "d",
        )
    with pytest.raises(ConfigError, match=r"d.options.dose_units: unknown option"):
        sources.load("mapped", {"h5ad": str(path)}, {"dose_units": "x"}, "control", "d")
    with pytest.raises(SchemaError, match=r"obs\['donor'\] is missing"):
        sources.load(
            "mapped",
            {"h5ad": str(path)},
            {"context": "donor", "perturbation": "label", "controls": ["ctrl"], "type": "protein"},
            "control",
            "d",
        )
    with pytest.raises(SchemaError, match="no control cells: obs\\['label'\\] has none of 'PBS'"):
        sources.load(
            "mapped",
            {"h5ad": str(path)},
            {
                "context": "cell_type",
                "perturbation": "label",
                "controls": ["PBS"],
                "type": "protein",
            },
            "control",
            "d",
        )
    with pytest.raises(ConfigError, match="d.files.h5ad is required for source 'mapped'"):
        sources.load("mapped", {}, {}, "control", "d")


# --------------------------------------------------------------------------------------- CITE-seq
def test_citeseq_geo_tar_of_10x_matrices(tmp_path):
    path = tmp_path / "GSE152469_RAW.tar"
    truth = fx.write_citeseq_tar(path)
    adata = citeseq.read_citeseq(path, samples={"GSM1_M0": "M0", "GSM2_M3": "M3"})
    assert list(adata.var_names) == truth["genes"]
    assert list(adata.obsm["protein"].columns) == truth["adts"]
    matrix, barcodes = truth["truth"]["GSM2_M3_"]
    cells = [f"M3:{b}" for b in barcodes]
    np.testing.assert_array_equal(adata[cells].X.toarray(), matrix[:12].T)
    np.testing.assert_array_equal(adata.obsm["protein"].loc[cells].to_numpy(), matrix[12:].T)
    assert adata.obs["sample"].value_counts().to_dict() == {"M3": 8, "M0": 7}


def test_citeseq_10x_h5_and_missing_adt(tmp_path):
    matrix, names, _ = fx.write_10x_h5(tmp_path / "filtered_feature_bc_matrix.h5")
    adata = citeseq.read_citeseq(tmp_path / "filtered_feature_bc_matrix.h5")
    np.testing.assert_array_equal(adata.X.toarray(), matrix[:3].T)
    np.testing.assert_array_equal(adata.obsm["protein"].to_numpy(), matrix[3:].T)
    rna_only = tmp_path / "rna.tar"
    fx.write_citeseq_tar(rna_only)
    import tarfile

    with (
        tarfile.open(rna_only) as tar,
        pytest.raises(SchemaError, match="features.tsv and barcodes.tsv"),
    ):
        members = {
            m.name: tar.extractfile(m).read() for m in tar.getmembers() if "barcodes" not in m.name
        }
        citeseq._read_triple(members, "x")


# ----------------------------------------------------------------------------------------- L1000
def test_l1000_level5_gctx_written_with_h5py_is_compacted(tmp_path):
    level5 = fx.write_level5(tmp_path)
    out = tmp_path / "compact.gctx"
    rows, cols = lincs.compact_l1000(
        level5["path"],
        out,
        sig_info=tmp_path / "sig_info.txt.gz",
        gene_info=tmp_path / "gene_info.txt",
        block=3,
    )
    landmark = [i for i in range(12) if i % 3 == 0]
    compound = [i for i in range(9) if i not in (0, 5)]
    assert (rows, cols) == (4, 7)
    gct = l1000.read_gct(out)
    np.testing.assert_array_equal(gct.data.to_numpy(), level5["data"][np.ix_(compound, landmark)].T)
    assert gct.row_meta["pr_gene_symbol"].tolist() == [f"SYM{i}" for i in landmark]
    assert gct.col_meta["pert_iname"].tolist() == [f"drug{i % 4}" for i in compound]
    assert (gct.col_meta["pert_type"] == "trt_cp").all()


def test_l1000_text_gct_reads_as_anndata(tmp_path):
    level5 = fx.write_level5(tmp_path)
    gct = l1000.read_gct(level5["path"])
    meta = level5["gene_info"].set_index("pr_gene_id")
    lines = [
        "#1.3",
        f"{len(gct.data)}\t{gct.data.shape[1]}\t2\t0",
        "\t".join(["id", "pr_gene_symbol", "pr_is_lmark", *gct.data.columns]),
    ]
    for gid, row in gct.data.iterrows():
        lines.append(
            "\t".join(
                [
                    gid,
                    meta.loc[gid, "pr_gene_symbol"],
                    meta.loc[gid, "pr_is_lmark"],
                    *[f"{v:.6f}" for v in row],
                ]
            )
        )
    (tmp_path / "sigs.gct").write_text("\n".join(lines) + "\n")
    adata = lincs.read_l1000(tmp_path / "sigs.gct", sig_info=tmp_path / "sig_info.txt.gz")
    assert list(adata.var_names) == ["SYM0", "SYM3", "SYM6", "SYM9"]
    np.testing.assert_allclose(adata.X, level5["data"][:, [0, 3, 6, 9]], atol=1e-6)
    assert adata.obs["pert_type"].tolist()[:2] == ["ctl_vehicle", "trt_cp"]
    with pytest.raises(SchemaError, match="column field 'pert_type' is missing"):
        lincs.compact_l1000(tmp_path / "sigs.gct", tmp_path / "x.gctx")


def test_unknown_source_and_files_are_config_errors():
    with pytest.raises(ConfigError, match="unknown source 'geo'"):
        sources.load("geo", {}, {}, "control", "d")
    with pytest.raises(ConfigError, match="d.files.counts: not a file of source 'gears'"):
        sources.load("gears", {"h5ad": "x", "counts": "y"}, {}, "control", "d")


def test_loaded_contract_survives_h5ad_round_trip(tmp_path):
    path = tmp_path / "perturb_processed.h5ad"
    fx.write_gears(path)
    loaded = sources.load("gears", {"h5ad": str(path)}, {}, "control", "d")
    loaded.adata.write_h5ad(tmp_path / "counts.h5ad")
    back = ad.read_h5ad(tmp_path / "counts.h5ad")
    schema.validate(back, "counts.h5ad", kind="raw")
