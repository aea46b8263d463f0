"""The metadata PerturbDiff conditions on (arXiv:2602.19685 App. B.3 "Covariate Encoder"):
vocabularies of cell lines, plates (batches), drugs and doses, the drugs' structure features, and
the encoding of (cell line, plate, drug, dose) keys into index tensors.

Every vocabulary keeps row 0 for a value unseen in training (a held-out drug's identity, a plate
or cell line the model never saw); an unseen drug still has its structure features, so unseen
drugs are predicted from structure (drug_ood). A dose not in the vocabulary maps to the nearest
training dose in ``log(1 + dose)``. A combination ``A+B`` at ``dA+dB`` is a list of components
(C slots per key, ``slot`` False where a key has fewer).

Structure features (one row per drug of the drug table, plus the control): Morgan bits
(radius 2, 1024 bits, RDKit) and, with ``drug_features: morgan_mdt``, the MDT template z_drug of
StateXDiff's drug prior (prior ``mdt``, :mod:`scpert.priors.outputs`; drugs without a template get
zeros). The control's row is the mean over the drugs (App. B.3: "The control perturbation
embedding is set to the mean embedding across all drugs").
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import torch

from scpert.data import schema
from scpert.data.schema import CELL_LINE, DOSE, DRUG, PLATE, SchemaError

log = logging.getLogger(__name__)


@dataclass
class Vocabularies:
    """Names behind every embedding table (row i + 1 = names[i]; 0 = unseen) and the rows of
    the structure-feature tables (``features``: drug names, the control last)."""

    cell_lines: list[str]
    plates: list[str]
    drugs: list[str]
    doses: list[float]
    features: list[str]
    control: str = schema.DEFAULT_CONTROL
    unpredictable: dict = field(default_factory=dict)  # name -> why it has no features
    _index: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        self._index = {
            name: {v: i + 1 for i, v in enumerate(getattr(self, name))}
            for name in ("cell_lines", "plates", "drugs")
        }
        self._feature = {v: i for i, v in enumerate(self.features)}
        self._log_doses = np.log1p(np.asarray(self.doses, dtype=np.float64))

    def as_dict(self) -> dict:
        keys = ("cell_lines", "plates", "drugs", "doses", "features", "control", "unpredictable")
        return {k: getattr(self, k) for k in keys}

    def index(self, table: str, value: str) -> int:
        return self._index[table].get(str(value), 0)

    def dose_index(self, dose: float) -> int:
        if not len(self.doses):
            return 0
        return int(np.argmin(np.abs(self._log_doses - np.log1p(float(dose))))) + 1

    def feature_row(self, drug: str) -> int:
        if drug not in self._feature:
            if drug in self.unpredictable:
                from scpert.perturbations import missing_features_error

                raise missing_features_error(drug, self.unpredictable, "perturbdiff")
            raise SchemaError(f"drug table: no row for drug '{drug}' (field 'drug')")
        return self._feature[drug]

    def encode(self, keys: pd.DataFrame, plate: Sequence | None = None) -> dict[str, torch.Tensor]:
        """Index tensors of keys with columns ``cell_line, drug, dose`` (and ``plate``, or
        ``plate`` given, None entries = unknown): ``cell_line, plate`` (B,), ``drug, feature,
        dose, slot`` (B, C)."""
        plates = keys[PLATE] if plate is None and PLATE in keys.columns else plate
        parts = []
        for drug, dose in zip(keys[DRUG].astype(str), keys[DOSE]):
            names, amounts = schema.components(drug), schema.component_doses(dose)
            if len(names) != len(amounts):
                raise SchemaError(
                    f"drug '{drug}' has {len(names)} components but dose '{dose}' has "
                    f"{len(amounts)}"
                )
            parts.append(list(zip(names, amounts)))
        n, width = len(parts), max((len(p) for p in parts), default=1)
        drug_ix = np.zeros((n, width), np.int64)
        feature = np.full((n, width), -1, np.int64)
        dose_ix = np.zeros((n, width), np.int64)
        for i, comps in enumerate(parts):
            for j, (name, amount) in enumerate(comps):
                drug_ix[i, j] = self.index("drugs", name)
                feature[i, j] = self.feature_row(name)
                dose_ix[i, j] = self.dose_index(amount)
        lines = [self.index("cell_lines", c) for c in keys[CELL_LINE].astype(str)]
        plates = [None] * n if plates is None else list(plates)
        plate_ix = [0 if p is None else self.index("plates", p) for p in plates]
        return {
            "cell_line": torch.tensor(lines, dtype=torch.long),
            "plate": torch.tensor(plate_ix, dtype=torch.long),
            "drug": torch.from_numpy(drug_ix),
            "feature": torch.from_numpy(feature),
            "dose": torch.from_numpy(dose_ix),
            "slot": torch.from_numpy(feature >= 0),
        }


def vocabularies(
    obs: pd.DataFrame, drugs: pd.DataFrame, control: str, extra_lines=()
) -> Vocabularies:
    """Vocabularies of training cells ``obs`` (all controls and training conditions) and the drug
    table's drugs as feature rows (the control last)."""
    lines = sorted({*obs[CELL_LINE].astype(str), *map(str, extra_lines)})
    plates = sorted(obs[PLATE].astype(str).unique()) if PLATE in obs.columns else []
    drug_names = sorted(
        {c for d in obs[DRUG].astype(str).unique() for c in schema.components(d)} | {control}
    )
    doses = sorted(
        {x for d in obs[DOSE].astype(str).unique() for x in schema.component_doses(d)} | {0.0}
    )
    features = [str(d) for d in drugs.index if str(d) != control] + [control]
    return Vocabularies(lines, plates, drug_names, doses, features, control)


def structure_features(
    drugs: pd.DataFrame,
    vocab: Vocabularies,
    p: dict,
    mdt_dir=None,
    *,
    seen=(),
    controls=None,
) -> tuple[torch.Tensor, torch.Tensor | None, Vocabularies]:
    """``(fingerprints, mdt, vocab)``: the feature tables with one row per ``vocab.features``
    (module docstring; each perturbation's type, :func:`scpert.perturbations.
    perturbation_features` with the split's training perturbations ``seen`` and its training
    ``controls``), and the vocabulary without the perturbations that have no features (an unseen
    protein: asking for it is an error, :meth:`Vocabularies.feature_row`)."""
    names = vocab.features[:-1]
    n_bits = int(p["fingerprint_bits"]) if p["drug_features"] != "none" else 0
    fps = np.zeros((len(names), n_bits), np.float32)
    if n_bits:
        from scpert.perturbations import perturbation_features

        table = perturbation_features(
            drugs,
            names,
            seen=seen,
            n_bits=n_bits,
            radius=int(p["fingerprint_radius"]),
            controls=controls,
        )
        if len(table) < len(names):
            vocab = replace(
                vocab,
                features=[*table.index, vocab.control],
                unpredictable=dict(table.attrs["unpredictable"]),
            )
            names = vocab.features[:-1]
        fps = table.to_numpy(np.float32)
    fps = np.vstack([fps, fps.mean(axis=0, keepdims=True) if len(fps) else fps[:1]])
    if p["drug_features"] != "morgan_mdt":
        return torch.from_numpy(fps), None, vocab
    if mdt_dir is None:
        raise SchemaError("perturbdiff: drug_features morgan_mdt needs the prior 'mdt'")
    from pathlib import Path

    from scpert.priors.outputs import MDT_TOKENS, load_drug_tokens

    tokens = load_drug_tokens(Path(mdt_dir) / MDT_TOKENS)
    row = {str(d): i for i, d in enumerate(tokens["drug"])}
    z = tokens["z_drug"].astype(np.float32)
    mdt = np.zeros((len(names), z.shape[1]), np.float32)
    missing = [d for d in names if d not in row]
    for i, d in enumerate(names):
        if d in row:
            mdt[i] = z[row[d]]
    if missing:
        log.warning(
            "perturbdiff: %d drugs have no MDT template in %s (zeros), e.g. %s",
            len(missing),
            mdt_dir,
            missing[:3],
        )
    mdt = np.vstack([mdt, mdt.mean(axis=0, keepdims=True)])
    return torch.from_numpy(fps), torch.from_numpy(mdt), vocab
