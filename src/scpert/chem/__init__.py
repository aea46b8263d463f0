"""Drug structure featurisers (RDKit Morgan fingerprints; UniMol hook)."""

from scpert.chem.featurize import (
    cosine_matrix,
    dose_scale,
    drug_features,
    morgan_fingerprints,
    structure_embedding,
    tanimoto_matrix,
)

__all__ = [
    "cosine_matrix",
    "dose_scale",
    "drug_features",
    "morgan_fingerprints",
    "structure_embedding",
    "tanimoto_matrix",
]
