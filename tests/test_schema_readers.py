"""The readers of scpert.data.io and the data-contract checks: one message naming file and field."""

from __future__ import annotations

import anndata as ad
import pandas as pd
import pytest

from scpert.data import io, schema
from scpert.data.preprocess import preprocess_counts
from scpert.data.schema import SchemaError
from scpert.data.splits import condition_table, make_split


@pytest.fixture
def processed(raw_small) -> ad.AnnData:
    return preprocess_counts(raw_small)


@pytest.fixture
def split_file(tmp_path, processed):
    table = make_split(condition_table(processed.obs, "control"), "drug_ood", test_drugs=["dA"])
    path = tmp_path / "split.tsv"
    table.to_csv(path, sep="\t", index=False)
    return path


def test_split_table_is_read_and_checked_against_its_data(split_file, processed):
    table = io.read_split(split_file, processed.obs["condition"], "p.h5ad")
    assert len(table) == processed.obs["condition"].nunique() == 57
    assert set(table.loc[table["drug"] == "dA", "split"]) == {"test"}


def test_split_table_cut_mid_line(split_file):
    text = split_file.read_text()
    split_file.write_text(text[: len(text) // 2])
    with pytest.raises(SchemaError, match=r"split\.tsv: the last line is incomplete"):
        io.read_split(split_file)


def test_split_table_missing_and_foreign_conditions(split_file, processed):
    lines = split_file.read_text().splitlines(keepends=True)
    split_file.write_text("".join(lines[:-2]))
    with pytest.raises(SchemaError, match=r"2 of the 57 conditions of p\.h5ad are missing"):
        io.read_split(split_file, processed.obs["condition"], "p.h5ad")
    split_file.write_text("".join(lines) + lines[1].replace("L1|", "L9|", 1))
    with pytest.raises(SchemaError, match=r"1 conditions are not in p\.h5ad, e\.g\. 'L9\|"):
        io.read_split(split_file, processed.obs["condition"], "p.h5ad")


def test_split_table_labels_and_duplicates(split_file):
    text = split_file.read_text()
    split_file.write_text(text.replace("\ttest\n", "\ttset\n", 1))
    with pytest.raises(SchemaError, match=r"unknown label 'tset' .*allowed: train, val, test"):
        io.read_split(split_file)
    lines = text.splitlines(keepends=True)
    split_file.write_text("".join(lines) + lines[5])
    with pytest.raises(SchemaError, match=r"is listed 2 times"):
        io.read_split(split_file)


def test_tsv_problems_are_named(tmp_path):
    path = tmp_path / "genes.tsv"
    path.write_text("")
    with pytest.raises(SchemaError, match=r"genes\.tsv: empty file"):
        io.read_genes(path)
    path.write_text("gene\n")
    with pytest.raises(SchemaError, match=r"genes\.tsv: no rows"):
        io.read_genes(path)
    path.write_text("gene,rank\nG1,1\n")
    with pytest.raises(SchemaError, match=r"not tab-separated"):
        io.read_genes(path)
    path.write_text("name\nG1\n")
    with pytest.raises(SchemaError, match=r"column 'gene' is missing"):
        io.read_genes(path)
    path.write_text("gene\tdispersion\nG1\t1\n\t2\n")
    with pytest.raises(SchemaError, match=r"line 3 has no value in column 'gene'"):
        io.read_genes(path)
    path.write_text("gene\nG1\nG2\nG1\n")
    with pytest.raises(SchemaError, match=r"gene 'G1' is listed twice"):
        io.read_genes(path)
    path.write_text("gene\nG1\nXYZ\n")
    with pytest.raises(SchemaError, match=r"1 genes are not in the var_names of p\.h5ad.*XYZ"):
        io.read_genes(path, ["G0", "G1"], "p.h5ad")
    with pytest.raises(SchemaError, match=r"missing\.tsv: file not found"):
        io.read_genes(tmp_path / "missing.tsv")


def test_unreadable_h5ad_is_one_line(tmp_path, raw_small):
    good = tmp_path / "good.h5ad"
    raw_small.write_h5ad(good)
    cut, text, empty = (tmp_path / f"{name}.h5ad" for name in ("cut", "text", "empty"))
    cut.write_bytes(good.read_bytes()[:5000])
    text.write_text("a,b\n1,2\n")
    empty.write_bytes(b"")
    for path, reason in (
        (cut, "truncated file"),
        (text, "file signature not found"),
        (empty, "empty file"),
    ):
        with pytest.raises(SchemaError) as err:
            io.read_h5ad(path)
        message = str(err.value)
        assert message.startswith(f"{path}: not a readable h5ad (") and reason in message
        assert "\n" not in message
    assert io.read_h5ad(good).n_obs == raw_small.n_obs


def test_prediction_checks(tmp_path, processed):
    genes = list(processed.var_names[:10])
    pred = processed[processed.obs["drug"].isin(["dA"]).to_numpy(), genes].copy()
    pred.uns["method"] = "m"
    path = tmp_path / "pred.h5ad"
    pred.write_h5ad(path)
    test = sorted(set(pred.obs["condition"].astype(str)))
    assert io.read_prediction(path, genes, test).n_obs == pred.n_obs
    with pytest.raises(SchemaError, match=r"no predicted cells for 1 of the 7 test conditions"):
        io.read_prediction(path, genes, [*test, "L1|dB|1"])
    with pytest.raises(SchemaError, match=r"var_names differ from the split's genes \(position 1"):
        io.read_prediction(path, [genes[0], genes[2], genes[1], *genes[3:]], test)
    with pytest.raises(SchemaError, match=r"10 genes, the split has 9"):
        io.read_prediction(path, genes[:9], test)


def _drugs(path, sep="\t", rows=None):
    table = pd.DataFrame(
        rows
        or [
            {"drug": "dA", "smiles": "CCO", "moa": "m1", "targets": ""},
            {"drug": "dB", "smiles": "CCN", "moa": "m1", "targets": "G1;G2"},
            {"drug": "IFNG", "smiles": "", "moa": "cytokine", "targets": ""},
        ]
    )
    table.to_csv(path, sep=sep, index=False)
    return path


def test_drug_table_against_the_data(tmp_path):
    path = _drugs(tmp_path / "drugs.tsv")
    table = io.read_drug_table(path, ["control", "dA", "dA+dB"], "c.h5ad")
    # only the perturbations of the data: the unused row without SMILES is never featurised
    assert list(table.index) == ["dA", "dB"] and table.attrs["source"] == str(path)
    assert len(io.read_drug_table(path)) == 3
    with pytest.raises(SchemaError) as err:
        io.read_drug_table(path, ["dA", "dC+dD"], "c.h5ad")
    assert str(err.value) == (
        f"{path}: no row for drug 'dC' of c.h5ad (column 'drug'; 2 of its 3 drugs missing: dC, dD)"
    )


def test_drug_table_separators(tmp_path):
    with pytest.raises(SchemaError, match=r"drugs\.tsv: not tab-separated .*name it \.csv"):
        io.read_drug_table(_drugs(tmp_path / "drugs.tsv", sep=","))
    table = io.read_drug_table(_drugs(tmp_path / "drugs.csv", sep=","))
    assert list(table.index) == ["dA", "dB", "IFNG"] and table.loc["dB", "targets"] == "G1;G2"


def test_drug_table_columns_and_names(tmp_path):
    rows = [{"drug": "dA", "smiles": "C", "moa": "m"}]
    with pytest.raises(SchemaError, match=r"column 'targets' is missing"):
        io.read_drug_table(_drugs(tmp_path / "a.tsv", rows=rows))
    rows = [{"drug": "dA", "smiles": "C", "moa": "m", "targets": ""}] * 2
    with pytest.raises(SchemaError, match=r"column 'drug' has duplicates, e\.g\. dA"):
        io.read_drug_table(_drugs(tmp_path / "b.tsv", rows=rows))
    rows = [{"drug": "dA", "smiles": "C", "moa": "m", "targets": ""}, {"drug": " ", "smiles": "C"}]
    with pytest.raises(SchemaError, match=r"line 3 has no value in column 'drug'"):
        io.read_drug_table(_drugs(tmp_path / "c.tsv", rows=rows))


def test_every_cell_line_needs_controls(raw_small):
    obs = raw_small.obs
    no_l2 = raw_small[~((obs["cell_line"] == "L2") & (obs["drug"] == "control")).to_numpy()]
    with pytest.raises(SchemaError) as err:
        schema.validate(no_l2, "r.h5ad", kind="raw")
    assert str(err.value).startswith(
        "r.h5ad: cell line 'L2' (obs['cell_line']) has no control cells (obs['drug'] == 'control')"
    )
    keep = ~(obs["drug"] == "control").to_numpy() | (obs["cell_line"] == "L1").to_numpy()
    assert schema.lines_without_controls(raw_small[keep].obs) == ["L2", "L3"]
    assert schema.missing_controls_message(["L2", "L3"], "control").endswith("; neither have L3")
    assert schema.lines_without_controls(raw_small.obs) == []
