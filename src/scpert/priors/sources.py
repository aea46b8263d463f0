"""Readers for the prior-knowledge tables of the drug–gene graph (StateXDiff App. A.3.1).

Each reader accepts the real public format and the synthetic world's (``scpert.data.simulate``),
and returns one tidy table; a missing column or file raises :class:`SchemaError` naming both.

PPI (:func:`read_ppi`)
    STRING ``protein.links`` files (``protein1 protein2 combined_score``, space separated, scores
    0–1000, optionally gzipped; ids like ``9606.ENSP...`` mapped to gene symbols through a STRING
    ``protein.info`` file) or a TSV ``gene1, gene2, score`` (synthetic ``ppi.tsv``). Pairs are
    undirected: self-pairs are dropped and each pair kept once with its highest score.
DTI (:func:`read_dti`)
    Any TSV/CSV with a drug and a gene column (``drug``/``drug_name``/``drug_claim_name``/...,
    ``gene``/``gene_name``/``target``/...; DGIdb ``interactions.tsv`` works as is) and an optional
    score (missing -> 1.0, a curated interaction).
Complexes (:func:`read_complexes`)
    CORUM ``allComplexes.txt`` (``ComplexID``, ``subunits(Gene name)``, ``Organism``; or the
    CORUM 5 names ``complex_id``, ``subunits_gene_name``, ``organism``), human complexes only, or
    the synthetic ``complexes.tsv`` (``complex_id``, ``genes``); members are ``;``-separated.
    :func:`complex_edges` turns complexes into PPI pairs (every member pair, curated score).
Gene sets (:func:`read_gmt`)
    GMT: ``name<TAB>description<TAB>gene...`` per line (MSigDB, synthetic ``gene_sets.gmt``).
Drugs (:func:`read_drugs`)
    The dataset's ``drugs.tsv`` plus an optional table of further drugs (``drug, smiles``).
"""

from __future__ import annotations

import gzip
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd

from scpert.data import io, schema
from scpert.data.schema import SchemaError

STRING_MAX_SCORE = 1000
DTI_DRUG_COLUMNS = ("drug", "drug_name", "drug_claim_name", "pert_iname", "compound")
DTI_GENE_COLUMNS = ("gene", "gene_name", "gene_claim_name", "target", "gene_symbol")
DTI_SCORE_COLUMNS = ("score", "interaction_score", "confidence")
COMPLEX_ID_COLUMNS = ("complex_id", "ComplexID")
COMPLEX_GENE_COLUMNS = ("genes", "subunits(Gene name)", "subunits_gene_name")
COMPLEX_ORGANISM_COLUMNS = ("organism", "Organism")


def _open_text(path: Path):
    if not path.is_file():
        raise SchemaError(f"{path}: file is missing")
    if path.suffix == ".gz":
        return gzip.open(path, "rt")
    return path.open()


def _first_line(path: Path) -> str:
    with _open_text(path) as handle:
        return handle.readline()


def _pick(table: pd.DataFrame, options: tuple[str, ...], path: Path, what: str) -> str:
    for name in options:
        if name in table.columns:
            return name
    raise SchemaError(f"{path}: no {what} column (expected one of: {', '.join(options)})")


def _undirected(gene1, gene2, score) -> pd.DataFrame:
    a, b = np.asarray(gene1, dtype=object), np.asarray(gene2, dtype=object)
    swap = a > b
    table = pd.DataFrame(
        {
            "gene1": np.where(swap, b, a),
            "gene2": np.where(swap, a, b),
            "score": np.broadcast_to(np.asarray(score, float), a.shape),
        }
    )
    table = table[table["gene1"] != table["gene2"]]
    table = table.groupby(["gene1", "gene2"], as_index=False, sort=True)["score"].max()
    return table.reset_index(drop=True)


def read_string_info(path: str | Path) -> dict[str, str]:
    """STRING ``protein.info`` file -> ``{string_protein_id: preferred_name}``."""
    path = Path(path)
    with _open_text(path) as handle:
        table = pd.read_csv(handle, sep="\t", dtype=str)
    table.columns = [c.lstrip("#") for c in table.columns]
    for col in ("string_protein_id", "preferred_name"):
        if col not in table.columns:
            raise SchemaError(f"{path}: column '{col}' is missing")
    return dict(zip(table["string_protein_id"], table["preferred_name"]))


def read_ppi(path: str | Path, string_info: str | Path | None = None) -> pd.DataFrame:
    """Scored undirected PPI pairs ``gene1 < gene2, score`` (score on STRING's 0–1000 scale)."""
    path = Path(path)
    header = _first_line(path).split()
    if "protein1" in header:  # STRING links (plain or detailed): whitespace separated
        with _open_text(path) as handle:
            table = pd.read_csv(handle, sep=r"\s+", dtype={"protein1": str, "protein2": str})
        for col in ("protein2", "combined_score"):
            if col not in table.columns:
                raise SchemaError(f"{path}: STRING column '{col}' is missing")
        a, b = table["protein1"], table["protein2"]
        if string_info is not None:
            names = read_string_info(string_info)
            a, b = a.map(names), b.map(names)
            known = a.notna() & b.notna()
            table, a, b = table[known], a[known], b[known]
        return _undirected(a, b, table["combined_score"])
    with _open_text(path) as handle:
        table = pd.read_csv(handle, sep="\t", dtype={"gene1": str, "gene2": str})
    for col in ("gene1", "gene2", "score"):
        if col not in table.columns:
            raise SchemaError(
                f"{path}: column '{col}' is missing (expected gene1, gene2, score or STRING links)"
            )
    return _undirected(table["gene1"], table["gene2"], table["score"])


def read_dti(path: str | Path) -> pd.DataFrame:
    """Drug–target pairs ``drug, gene, score`` (highest score per pair; no score column -> 1.0)."""
    path = Path(path)
    sep = "\t" if "\t" in _first_line(path) else ","
    with _open_text(path) as handle:
        table = pd.read_csv(handle, sep=sep, dtype=str, keep_default_na=False)
    drug = _pick(table, DTI_DRUG_COLUMNS, path, "drug")
    gene = _pick(table, DTI_GENE_COLUMNS, path, "gene")
    score_col = next((c for c in DTI_SCORE_COLUMNS if c in table.columns), None)
    score = pd.to_numeric(table[score_col], errors="coerce") if score_col else 1.0
    out = pd.DataFrame({"drug": table[drug].str.strip(), "gene": table[gene].str.strip()})
    out["score"] = score
    out["score"] = out["score"].fillna(1.0)
    out = out[(out["drug"] != "") & (out["gene"] != "")]
    return out.groupby(["drug", "gene"], as_index=False, sort=True)["score"].max()


def read_complexes(path: str | Path, organism: str = "Human") -> pd.DataFrame:
    """Protein complexes ``complex_id, genes`` (``genes``: sorted list of member symbols)."""
    path = Path(path)
    with _open_text(path) as handle:
        table = pd.read_csv(handle, sep="\t", dtype=str, keep_default_na=False)
    cid = _pick(table, COMPLEX_ID_COLUMNS, path, "complex id")
    genes = _pick(table, COMPLEX_GENE_COLUMNS, path, "complex subunit genes")
    org = next((c for c in COMPLEX_ORGANISM_COLUMNS if c in table.columns), None)
    if org is not None:
        table = table[table[org].str.lower() == organism.lower()]
    members = table[genes].map(
        lambda text: sorted(
            {g.strip() for g in text.split(";") if g.strip() and g.strip() != "None"}
        )
    )
    return pd.DataFrame({"complex_id": table[cid].to_numpy(), "genes": members.to_numpy()})


def complex_edges(complexes: pd.DataFrame, score: float = STRING_MAX_SCORE) -> pd.DataFrame:
    """Every member pair of every complex as a PPI pair with a curated ``score``."""
    pairs = [(a, b) for members in complexes["genes"] for a, b in combinations(members, 2)]
    if not pairs:
        return pd.DataFrame({"gene1": [], "gene2": [], "score": []})
    a, b = zip(*pairs)
    return _undirected(a, b, np.full(len(pairs), float(score)))


def read_gmt(path: str | Path) -> dict[str, list[str]]:
    """Gene sets of a GMT file, ``{name: [genes]}`` in file order."""
    path = Path(path)
    sets: dict[str, list[str]] = {}
    with _open_text(path) as handle:
        for number, line in enumerate(handle, start=1):
            fields = [f.strip() for f in line.rstrip("\n").split("\t")]
            if not any(fields):
                continue
            if len(fields) < 2:
                raise SchemaError(f"{path}: line {number} has no description field (GMT)")
            sets[fields[0]] = [g for g in fields[2:] if g]
    return sets


def read_drugs(drugs_path, extra_drugs_path=None) -> pd.DataFrame:
    """The dataset's drug table, plus drugs of an extra table (``drug, smiles``; e.g. L1000-only
    compounds) that it lacks; index ``drug``, columns ``smiles`` and ``moa`` ("" when unknown)."""
    table = io.read_drug_table(drugs_path)[["smiles", "moa"]]
    if extra_drugs_path:
        extra = pd.read_csv(extra_drugs_path, sep="\t", dtype=str, keep_default_na=False)
        for col in ("drug", "smiles"):
            if col not in extra.columns:
                raise SchemaError(f"{extra_drugs_path}: column '{col}' is missing")
        extra = extra.drop_duplicates("drug").set_index("drug")
        extra = extra.reindex(columns=["smiles", "moa"], fill_value="")
        table = pd.concat([table, extra.loc[~extra.index.isin(table.index)]])
    table.attrs["source"] = str(drugs_path)
    return table


def held_out_drugs(split: pd.DataFrame, control: str = schema.DEFAULT_CONTROL) -> set[str]:
    """Every single drug of the split's test conditions (components of combinations too)."""
    drugs = split.loc[split["split"] == "test", "drug"].astype(str)
    return {c for d in drugs for c in schema.components(d) if c != control}
