"""Perturbation types and the features every method reads (docs/architecture.md "Perturbations").

A dataset's perturbation table (``drugs.tsv``: ``drug, smiles, moa, targets`` and an optional
``type``) has one row per single perturbation; ``type`` is one of :data:`TYPES`, declared per
dataset (``datasets.<name>.perturbation_type``, or the loader's ``type`` option) and ``chemical``
where the column is absent (the drug tables written before the column existed):

``chemical``
    a small molecule: its SMILES (``smiles``), featurised as a Morgan bit vector
    (:func:`scpert.chem.morgan_fingerprints`). A missing or invalid SMILES is reported when the
    data are read (rule ``preprocess``, :func:`check_structures`).
``genetic``
    a CRISPR knock-down / activation of the gene(s) in ``targets`` (default: its own name; Norman,
    Replogle): an identity code (below) plus the target gene's profile in the training controls:
    its loadings on their principal components (the gene's correlation structure with the other
    genes), so that a gene never perturbed in training still has features when it is in the gene
    space.
``protein``
    a ligand (cytokine; the PBMC set of PerturbDiff arXiv:2602.19685 App. A.2): an identity code
    only. A protein never seen in training has no features.

:func:`perturbation_features` returns one ``n_bits``-wide row per perturbation, so a method built
for fingerprints (scPPDM's DrugMapper, StateXDiff's structure encoder, PerturbDiff's drug MLP,
scDFM, ``base_reg``) takes any type unchanged. The identity code is a fixed random unit vector
per training perturbation (a standard normal vector seeded by the CRC-32 of its name, scaled to
unit norm) in the first ``n_bits // 2`` entries: the method's first linear layer on it is a learned
identity embedding (the codes of up to ``n_bits // 2`` perturbations are linearly independent with
probability 1, so any embedding table is reachable). The gene profile fills the other entries.
Perturbations without features (an unseen protein, an unseen gene outside the gene space) are
left out and named in ``attrs["unpredictable"]``; :func:`missing_features_error` is the error a
method raises when asked for one.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from scpert.data import schema
from scpert.data.schema import SchemaError

CHEMICAL, GENETIC, PROTEIN = "chemical", "genetic", "protein"
TYPES = (CHEMICAL, GENETIC, PROTEIN)
TYPE_FIELD = "type"
SMILES_FIELD = "smiles"
#: controls whose expression the gene profiles are computed on, at most (seeded draw)
PROFILE_CELLS = 1000


def types_of(drugs: pd.DataFrame, source: str = "drug table") -> pd.Series:
    """The ``type`` of each row (index ``drug``), ``chemical`` where the table has no column."""
    if TYPE_FIELD not in drugs.columns:
        return pd.Series(CHEMICAL, index=drugs.index, name=TYPE_FIELD)
    kinds = drugs[TYPE_FIELD].astype(str).str.strip().replace("", CHEMICAL)
    bad = kinds[~kinds.isin(TYPES)]
    if len(bad):
        raise SchemaError(
            f"{source}: field '{TYPE_FIELD}' of drug '{bad.index[0]}' is '{bad.iloc[0]}' "
            f"(one of {', '.join(TYPES)})"
        )
    return kinds.rename(TYPE_FIELD)


def check_structures(drugs: pd.DataFrame, source: str = "drug table") -> None:
    """Every chemical row has a parsable SMILES; raise :class:`SchemaError` naming the drug."""
    from scpert.chem.featurize import morgan_fingerprints

    kinds = types_of(drugs, source)
    chemical = [d for d in drugs.index if kinds[d] == CHEMICAL]
    if not chemical:
        return
    if SMILES_FIELD not in drugs.columns:
        raise SchemaError(f"{source}: column '{SMILES_FIELD}' is missing")
    morgan_fingerprints({d: drugs.loc[d, SMILES_FIELD] for d in chemical}, source=source)


def _targets(drugs: pd.DataFrame, name: str) -> list[str]:
    text = str(drugs.loc[name, "targets"]) if "targets" in drugs.columns else ""
    return [t for t in (s.strip() for s in text.split(";")) if t] or [name]


def identity_code(name: str, width: int) -> np.ndarray:
    """The fixed unit vector of one perturbation (seeded by the CRC-32 of its name)."""
    rng = np.random.default_rng(zlib.crc32(name.encode("utf-8")))
    code = rng.standard_normal(width)
    return code / max(np.linalg.norm(code), 1e-12)


def gene_profiles(controls, width: int, seed: int = 0) -> pd.DataFrame:
    """Each gene's unit-norm loadings on the top ``width`` principal components of the control
    cells' standardised log expression (index gene symbols; zero rows for constant genes).

    controls: an AnnData of control cells (log-normalised ``X``); at most :data:`PROFILE_CELLS`
    of them (seeded draw) enter the decomposition.
    """
    import scipy.sparse as sp

    n = controls.n_obs
    rows = np.sort(np.random.default_rng(seed).permutation(n)[:PROFILE_CELLS]) if n else []
    X = controls.X[rows]
    X = np.asarray(X.toarray() if sp.issparse(X) else X, dtype=np.float64)
    X = X - X.mean(axis=0)
    std = X.std(axis=0)
    X = np.divide(X, std, out=np.zeros_like(X), where=std > 1e-8)
    k = max(0, min(width, X.shape[0] - 1, X.shape[1]))
    loadings = np.zeros((X.shape[1], width))
    if k:
        _, s, vt = np.linalg.svd(X, full_matrices=False)
        loadings[:, :k] = (vt[:k] * s[:k, None]).T
    norm = np.linalg.norm(loadings, axis=1, keepdims=True)
    loadings = np.divide(loadings, norm, out=np.zeros_like(loadings), where=norm > 1e-12)
    return pd.DataFrame(loadings, index=pd.Index([str(g) for g in controls.var_names]))


def seen_perturbations(obs: pd.DataFrame, control: str) -> list[str]:
    """The single perturbations of the cells in ``obs`` (combination components, no control)."""
    return sorted(
        {
            c
            for d in obs[schema.DRUG].astype(str).unique()
            if d != control
            for c in schema.components(d)
        }
    )


def perturbation_features(
    drugs: pd.DataFrame,
    names: Iterable[str],
    *,
    seen: Iterable[str],
    n_bits: int,
    radius: int = 2,
    controls=None,
    source: str | None = None,
) -> pd.DataFrame:
    """One ``n_bits``-wide feature row per perturbation of ``names`` that has features (module
    docstring); index ``drug``. ``attrs["unpredictable"]``: name -> why it has none.

    drugs: the perturbation table (index ``drug``); seen: the perturbations of the training cells;
    controls: the training control cells (AnnData, log X in the method's genes) for the genes'
    profiles; without them a genetic perturbation has its identity code only.
    """
    from scpert.chem.featurize import morgan_fingerprints

    source = source or drugs.attrs.get("source", "drug table")
    names = [str(n) for n in names]
    absent = [n for n in names if n not in drugs.index]
    if absent:
        raise SchemaError(f"{source}: no row for perturbation '{absent[0]}' (field 'drug')")
    kinds = types_of(drugs.loc[names], source) if names else pd.Series(dtype=str)
    seen = set(map(str, seen))
    rows: dict[str, np.ndarray] = {}
    unpredictable: dict[str, str] = {}
    chemical = [n for n in names if kinds[n] == CHEMICAL]
    if chemical:
        if SMILES_FIELD not in drugs.columns:
            raise SchemaError(f"{source}: column '{SMILES_FIELD}' is missing")
        fps = morgan_fingerprints(
            {n: drugs.loc[n, SMILES_FIELD] for n in chemical},
            radius=radius,
            n_bits=n_bits,
            source=source,
        )
        rows.update({n: fps.loc[n].to_numpy(np.float32) for n in chemical})
    n_id = n_bits // 2
    profiles = None
    if controls is not None and any(kinds[n] == GENETIC for n in names):
        profiles = gene_profiles(controls, n_bits - n_id)
    for name in names:
        kind = kinds[name]
        if kind == CHEMICAL:
            continue
        row = np.zeros(n_bits, np.float32)
        if name in seen:
            row[:n_id] = identity_code(name, n_id)
        gene_part = False
        if kind == GENETIC and profiles is not None:
            genes = [g for g in _targets(drugs, name) if g in profiles.index]
            if genes:
                row[n_id:] = profiles.loc[genes].to_numpy().mean(axis=0)
                gene_part = True
        if name not in seen and not gene_part:
            unpredictable[name] = (
                f"a {kind} perturbation is known by its identity (learned from its training "
                "cells) only, and it has none"
                if kind == PROTEIN
                else "its target gene is not in the method's gene space, so it has no gene "
                "profile, and it has no training cells"
            )
            continue
        rows[name] = row
    kept = [n for n in names if n in rows]
    table = pd.DataFrame(
        np.stack([rows[n] for n in kept]) if kept else np.zeros((0, n_bits), np.float32),
        index=pd.Index(kept, name="drug"),
    )
    table.attrs["unpredictable"] = unpredictable
    table.attrs["types"] = {n: str(kinds[n]) for n in names}
    table.attrs["source"] = source
    return table


def method_features(train, names: Iterable[str], *, n_bits: int, radius: int = 2) -> pd.DataFrame:
    """:func:`perturbation_features` of ``names`` for a method fitted on ``train``
    (:class:`~scpert.methods.base.PerturbData`): seen = its training perturbations, the gene
    profiles from its control cells."""
    obs = train.adata.obs
    is_control = (obs[schema.DRUG].astype(str) == train.control).to_numpy()
    controls = train.adata[is_control] if is_control.any() else None
    return perturbation_features(
        train.drugs,
        names,
        seen=seen_perturbations(obs, train.control),
        n_bits=n_bits,
        radius=radius,
        controls=controls,
    )


def added_features(
    drugs: pd.DataFrame, names: Iterable[str], known: Iterable[str], *, n_bits: int, radius: int
) -> pd.DataFrame:
    """:func:`perturbation_features` of the ``names`` not in ``known`` (a fitted model's feature
    rows), for :meth:`scpert.methods.base.Method.add_perturbations`: none of them was seen in
    training, and without training controls a genetic perturbation gets its identity code only.
    A name without features (no SMILES, an unseen protein) raises its error here."""
    known = set(map(str, known))
    new = list(dict.fromkeys(str(n) for n in names if str(n) not in known))
    table = perturbation_features(drugs, new, seen=(), n_bits=n_bits, radius=radius)
    missing = [n for n in new if n not in table.index]
    if missing:
        raise missing_features_error(missing[0], table.attrs["unpredictable"])
    return table


def missing_features_error(
    name: str, unpredictable: dict | None = None, method: str = ""
) -> SchemaError:
    """The error of a method asked to predict a perturbation it has no features for."""
    who = f"{method}: " if method else ""
    reason = (unpredictable or {}).get(name)
    if reason:
        return SchemaError(
            f"{who}cannot predict perturbation '{name}' unseen in training: {reason}"
        )
    return SchemaError(f"{who}drug table: no '{SMILES_FIELD}' for drug '{name}' (field 'drug')")


@dataclass
class DrugTable:
    """Every perturbation a model can be asked about: its feature rows
    (:func:`perturbation_features`), and the training perturbations' ids (``0`` = unseen)."""

    names: list[str]
    fingerprints: np.ndarray  # (n_perturbations, n_bits) feature rows
    train_drugs: list[str]  # drug_id vocabulary: id i + 1; 0 = not seen in training
    unpredictable: dict | None = None  # name -> why it has no features

    def __post_init__(self):
        self._row = {n: i for i, n in enumerate(self.names)}
        self._id = {n: i + 1 for i, n in enumerate(self.train_drugs)}

    def row(self, name: str) -> int:
        if name not in self._row:
            raise missing_features_error(name, self.unpredictable)
        return self._row[name]

    def train_id(self, name: str) -> int:
        return self._id.get(name, 0)

    def grown(
        self, drugs: pd.DataFrame, names: Iterable[str], *, radius: int
    ) -> tuple[DrugTable, pd.DataFrame]:
        """This table with feature rows of the ``names`` it lacks appended
        (:func:`added_features`; the training ids unchanged), and those rows."""
        new = added_features(
            drugs, names, self.names, n_bits=int(self.fingerprints.shape[1]), radius=radius
        )
        table = DrugTable(
            [*self.names, *new.index],
            np.vstack([self.fingerprints, new.to_numpy(np.float32)]),
            list(self.train_drugs),
            dict(self.unpredictable or {}),
        )
        return table, new

    def unseen(self, names: Iterable[str]) -> list[str]:
        """The ``names`` this table has no row for, in order."""
        known = set(self.names)
        return [n for n in names if n not in known]

    def grown_into(self, encoder, drugs: pd.DataFrame, names: Iterable[str], *, radius: int):
        """:meth:`grown`, with the new rows also appended to ``encoder.fingerprints`` (a torch
        buffer, the rows of this table in order): ``(grown table, names added)``."""
        import torch

        table, new = self.grown(drugs, names, radius=radius)
        rows = torch.as_tensor(new.to_numpy(np.float32), device=encoder.fingerprints.device)
        encoder.fingerprints = torch.cat([encoder.fingerprints, rows])
        return table, list(new.index)


def drug_table(train, seen: Sequence[str], p: dict) -> DrugTable:
    """The :class:`DrugTable` of a method fitted on ``train``: feature rows of every perturbation
    of the drug table (held-out ones too: a chemical's structure is known; params
    ``fingerprint_bits``, ``fingerprint_radius``), ``seen`` its training perturbations."""
    source = train.drugs.attrs.get("source", "drug table")
    missing = [d for d in seen if d not in train.drugs.index]
    if missing:
        raise SchemaError(f"{source}: no row for training drug '{missing[0]}' (field 'drug')")
    names = [str(d) for d in train.drugs.index if str(d) != train.control]
    features = method_features(
        train, names, n_bits=int(p["fingerprint_bits"]), radius=int(p["fingerprint_radius"])
    )
    return DrugTable(
        list(features.index),
        features.to_numpy(np.float32),
        list(seen),
        dict(features.attrs["unpredictable"]),
    )
