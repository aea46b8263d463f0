"""Drug structure features: Morgan fingerprints, Tanimoto similarity, dose-scaled drug vectors.

Morgan (ECFP-like) bit vectors come from ``rdkit.Chem.rdFingerprintGenerator.GetMorganGenerator``
(radius 2, 1024 bits: the scPPDM DrugMapper input, scPPDM App. D). Dose enters as
``log1p(dose) / log1p(max_dose)`` (the ``log(1+d)`` scaling of StateXDiff's MDT, arXiv:2605.16104
§3, and of scPPDM App. D, normalised so the largest training dose maps to 1). A combination ``A+B`` at ``dA+dB`` is the sum of
its components' features (order-free).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from rdkit import Chem, rdBase
from rdkit.Chem import rdFingerprintGenerator

from scpert.data.schema import SchemaError, component_doses, components

SMILES_FIELD = "smiles"
ENCODERS = ("morgan", "unimol")


def _molecule(drug: str, smiles, source: str) -> Chem.Mol:
    """Parse one SMILES; a missing, empty or unparsable one raises :class:`SchemaError`."""
    text = "" if smiles is None or (isinstance(smiles, float) and np.isnan(smiles)) else str(smiles)
    if not text.strip():
        raise SchemaError(f"{source}: field '{SMILES_FIELD}' of drug '{drug}' is missing")
    with rdBase.BlockLogs():
        mol = Chem.MolFromSmiles(text.strip())
    if mol is None or mol.GetNumAtoms() == 0:
        raise SchemaError(
            f"{source}: field '{SMILES_FIELD}' of drug '{drug}' is not a valid SMILES: {text!r}"
        )
    return mol


def morgan_fingerprints(
    smiles: Mapping[str, str], radius: int = 2, n_bits: int = 1024, source: str = "<drug table>"
) -> pd.DataFrame:
    """Morgan bit vectors, one row per drug (index ``drug``, columns bit 0..n_bits-1, uint8).

    source: the file the SMILES came from, named in errors (with the drug and field ``smiles``).
    """
    generator = rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=n_bits)
    drugs = [str(d) for d in smiles]
    bits = np.zeros((len(drugs), n_bits), dtype=np.uint8)
    for i, drug in enumerate(drugs):
        bits[i] = generator.GetFingerprintAsNumPy(_molecule(drug, smiles[drug], source))
    return pd.DataFrame(
        bits, index=pd.Index(drugs, name="drug"), columns=pd.RangeIndex(n_bits, name="bit")
    )


def tanimoto_matrix(fps: pd.DataFrame) -> pd.DataFrame:
    """Pairwise Tanimoto similarity |a AND b| / |a OR b| of bit vectors; 0 where both are empty."""
    bits = (fps.to_numpy() > 0).astype(np.float64)
    shared = bits @ bits.T
    on = bits.sum(axis=1)
    union = on[:, None] + on[None, :] - shared
    sim = np.divide(shared, union, out=np.zeros_like(shared), where=union > 0)
    return pd.DataFrame(sim, index=fps.index, columns=fps.index)


def cosine_matrix(embedding: pd.DataFrame) -> pd.DataFrame:
    """Pairwise cosine similarity of per-drug embeddings (rows); 0 where a row is all zero.

    The drug–drug similarity (DDS) edges of the StateXDiff graph prior connect drugs whose
    structure embeddings have cosine above a threshold (App. A.3.1).
    """
    values = embedding.to_numpy(dtype=np.float64)
    norm = np.linalg.norm(values, axis=1, keepdims=True)
    unit = np.divide(values, norm, out=np.zeros_like(values), where=norm > 0)
    return pd.DataFrame(unit @ unit.T, index=embedding.index, columns=embedding.index)


def structure_embedding(
    smiles: Mapping[str, str],
    encoder: str = "morgan",
    *,
    radius: int = 2,
    n_bits: int = 1024,
    source: str = "<drug table>",
) -> pd.DataFrame:
    """Per-drug structure embedding (index ``drug``); the hook methods use to pick a drug encoder.

    ``"morgan"`` (default): :func:`morgan_fingerprints`. ``"unimol"``: the UniMol encoder named in
    StateXDiff (arXiv:2605.16104) §3 needs pretrained UniMol weights, which this workplace cannot
    download; the branch raises instead of silently falling back, so a config asking for UniMol
    fails loudly.
    """
    if encoder == "morgan":
        return morgan_fingerprints(smiles, radius=radius, n_bits=n_bits, source=source)
    if encoder == "unimol":
        raise RuntimeError(
            "structure encoder 'unimol' needs pretrained UniMol weights, which are not available "
            "offline; use encoder='morgan' (the default)"
        )
    raise ValueError(f"unknown structure encoder '{encoder}' (available: {', '.join(ENCODERS)})")


def dose_scale(dose: float, max_dose: float) -> float:
    """``log1p(dose) / log1p(max_dose)``; ``max_dose <= 0`` (no dosed drug) leaves log1p(dose)."""
    denominator = np.log1p(max_dose) if max_dose > 0 else 1.0
    return float(np.log1p(dose) / denominator)


def drug_features(drug: str, dose, fps: pd.DataFrame, max_dose: float = 1.0) -> np.ndarray:
    """``[sum_c FP_c * dose_scale(d_c), sum_c FP_c]`` over the components c of ``drug`` (float32).

    drug: a single drug or a combination ``A+B``; dose: the matching dose text ``dA+dB`` (or a
    number for a single). fps: fingerprints indexed by drug (e.g. :func:`morgan_fingerprints`).
    """
    names, doses = components(str(drug)), component_doses(dose)
    if len(names) != len(doses):
        raise ValueError(
            f"drug '{drug}' has {len(names)} components but dose '{dose}' has {len(doses)}"
        )
    scaled = np.zeros(fps.shape[1], dtype=np.float64)
    plain = np.zeros(fps.shape[1], dtype=np.float64)
    for name, amount in zip(names, doses):
        if name not in fps.index:
            from scpert.perturbations import missing_features_error

            raise missing_features_error(name, fps.attrs.get("unpredictable"))
        bits = fps.loc[name].to_numpy(dtype=np.float64)
        scaled += bits * dose_scale(amount, max_dose)
        plain += bits
    return np.concatenate([scaled, plain]).astype(np.float32)
