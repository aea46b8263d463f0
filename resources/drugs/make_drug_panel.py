"""Build ``drug_panel.tsv``: MoA groups of real molecules whose structure tracks the group.

Usage::

    python resources/drugs/make_drug_panel.py SCIPLEX_CSV LINCS_CSV OUT_TSV \
        [--groups 10] [--size 10]

SCIPLEX_CSV: ``name,smiles,pathway`` without header (chemCPA ``trapnell_drugs_smiles.csv``).
LINCS_CSV: ``brd_id, smiles`` without header (chemCPA ``lincs_drugs_smiles.csv``).

Each group is one named sci-Plex drug (the seed) plus its nearest structural neighbours among the
LINCS compounds (BRD ids as names). Similarity is the Tanimoto coefficient of RDKit Morgan
fingerprints (radius 2, 1024 bits, ``rdFingerprintGenerator``), the featurisation the project uses.
Seeds are taken greedily by how tight their neighbourhood is (mean similarity of the ``size - 1``
nearest neighbours). A seed is skipped when its pathway is already used twice, when it is too close
to an accepted group (Tanimoto >= 0.3 to any member), or when it has fewer than ``size - 1``
neighbours with Tanimoto >= 0.35. A candidate neighbour at least as similar to an accepted group's
member as to its own seed is passed over, and so are multi-fragment SMILES (salts, mixtures) and
fingerprint duplicates (Tanimoto >= 0.99 to a member). The group's label is the seed's pathway plus
the group index; it stands for a mechanism of action in the synthetic world.
"""

from __future__ import annotations

import argparse
import re
import sys

import numpy as np
import pandas as pd
from rdkit import Chem, DataStructs, RDLogger
from rdkit.Chem import rdFingerprintGenerator

DUPLICATE = 0.99
MIN_NEIGHBOUR = 0.35
SEPARATION = 0.3
MAX_PER_PATHWAY = 2
EXCLUDED_PATHWAYS = {"Vehicle", "NA", "Others"}


def fingerprints(smiles: list[str]) -> list:
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=1024)
    out = []
    for s in smiles:
        mol = Chem.MolFromSmiles(s)
        out.append(None if mol is None else gen.GetFingerprint(mol))
    return out


def read_inputs(sciplex_csv: str, lincs_csv: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    sciplex = pd.read_csv(
        sciplex_csv,
        header=None,
        names=["name", "smiles", "pathway"],
        dtype=str,
        keep_default_na=False,
    )
    sciplex = sciplex[~sciplex["pathway"].isin(EXCLUDED_PATHWAYS)]
    sciplex = sciplex[~sciplex["smiles"].str.contains(".", regex=False)].reset_index(drop=True)
    lincs = pd.read_csv(
        lincs_csv,
        header=None,
        names=["name", "smiles"],
        sep=",",
        skipinitialspace=True,
        dtype=str,
        keep_default_na=False,
    )
    lincs = lincs[~lincs["smiles"].str.contains(".", regex=False)].reset_index(drop=True)
    for table, path in ((sciplex, sciplex_csv), (lincs, lincs_csv)):
        table["fp"] = fingerprints(table["smiles"].tolist())
        if table["fp"].isna().all():
            sys.exit(f"{path}: no SMILES in column 2 could be parsed by RDKit")
    return (
        sciplex[sciplex["fp"].notna()].reset_index(drop=True),
        lincs[lincs["fp"].notna()].reset_index(drop=True),
    )


def neighbourhood(
    seed_fp, lincs_fps: list, size: int, used: set[int], other_fps: list
) -> list[int]:
    """Indices of the ``size - 1`` nearest LINCS compounds to a seed, without duplicates."""
    sims = np.asarray(DataStructs.BulkTanimotoSimilarity(seed_fp, lincs_fps))
    members: list = [seed_fp]
    chosen: list[int] = []
    for j in np.argsort(-sims, kind="stable"):
        if len(chosen) == size - 1:
            break
        if sims[j] < MIN_NEIGHBOUR:
            return []
        if j in used or sims[j] >= DUPLICATE:
            continue
        fp = lincs_fps[j]
        if max(DataStructs.BulkTanimotoSimilarity(fp, members)) >= DUPLICATE:
            continue
        if other_fps and max(DataStructs.BulkTanimotoSimilarity(fp, other_fps)) >= sims[j]:
            continue
        members.append(fp)
        chosen.append(int(j))
    return chosen


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def build_panel(
    sciplex: pd.DataFrame, lincs: pd.DataFrame, n_groups: int, size: int
) -> pd.DataFrame:
    lincs_fps = lincs["fp"].tolist()
    tightness = []
    for fp in sciplex["fp"]:
        sims = np.sort(np.asarray(DataStructs.BulkTanimotoSimilarity(fp, lincs_fps)))[::-1]
        sims = sims[sims < DUPLICATE]
        tightness.append(float(sims[: size - 1].mean()))
    order = np.argsort(-np.asarray(tightness), kind="stable")
    rows: list[dict] = []
    used: set[int] = set()
    accepted_fps: list = []
    pathways: dict[str, int] = {}
    n_built = 0
    for i in order:
        if n_built == n_groups:
            break
        seed = sciplex.iloc[i]
        if pathways.get(seed["pathway"], 0) >= MAX_PER_PATHWAY:
            continue
        if (
            accepted_fps
            and max(DataStructs.BulkTanimotoSimilarity(seed["fp"], accepted_fps)) >= SEPARATION
        ):
            continue
        members = neighbourhood(seed["fp"], lincs_fps, size, used, accepted_fps)
        if len(members) < size - 1:
            continue
        n_built += 1
        moa = f"{slug(seed['pathway'])}_{n_built}"
        pathways[seed["pathway"]] = pathways.get(seed["pathway"], 0) + 1
        rows.append(
            {"drug": seed["name"], "smiles": seed["smiles"], "moa": moa, "source": "sciplex"}
        )
        accepted_fps.append(seed["fp"])
        for j in members:
            rows.append(
                {
                    "drug": lincs.at[j, "name"],
                    "smiles": lincs.at[j, "smiles"],
                    "moa": moa,
                    "source": "lincs",
                }
            )
            accepted_fps.append(lincs_fps[j])
            used.add(j)
    if n_built < n_groups:
        sys.exit(f"only {n_built} of {n_groups} groups could be built")
    return pd.DataFrame(rows)


def similarity_summary(panel: pd.DataFrame) -> tuple[float, float]:
    """Mean Tanimoto within groups and between groups (pairs of distinct molecules)."""
    fps = fingerprints(panel["smiles"].tolist())
    sim = np.array([DataStructs.BulkTanimotoSimilarity(f, fps) for f in fps])
    same = panel["moa"].to_numpy()[:, None] == panel["moa"].to_numpy()[None, :]
    off = ~np.eye(len(panel), dtype=bool)
    return float(sim[same & off].mean()), float(sim[~same].mean())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sciplex_csv")
    parser.add_argument("lincs_csv")
    parser.add_argument("out_tsv")
    parser.add_argument("--groups", type=int, default=10)
    parser.add_argument("--size", type=int, default=10)
    args = parser.parse_args(argv)
    RDLogger.DisableLog("rdApp.*")
    sciplex, lincs = read_inputs(args.sciplex_csv, args.lincs_csv)
    panel = build_panel(sciplex, lincs, args.groups, args.size)
    panel.to_csv(args.out_tsv, sep="\t", index=False)
    within, between = similarity_summary(panel)
    print(
        f"{len(panel)} drugs in {panel['moa'].nunique()} groups; "
        f"mean Tanimoto within {within:.3f}, between {between:.3f}"
    )


if __name__ == "__main__":
    main()
