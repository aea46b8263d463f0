"""RDKit featuriser: Morgan bits, Tanimoto, dose-scaled drug features, errors naming the file."""

import numpy as np
import pandas as pd
import pytest
from rdkit import Chem, DataStructs
from rdkit.Chem import rdFingerprintGenerator

from scpert.chem import (
    cosine_matrix,
    dose_scale,
    drug_features,
    morgan_fingerprints,
    structure_embedding,
    tanimoto_matrix,
)
from scpert.data.schema import SchemaError

# real SMILES (sci-Plex drug list, ../shared/data/sciplex_drugs_smiles.csv)
SMILES = {
    "Belinostat": "O=C(/C=C/c1cccc(S(=O)(=O)Nc2ccccc2)c1)NO",
    "Dacinostat": "O=C(/C=C/c1ccc(CN(CCO)CCc2c[nH]c3ccccc23)cc1)NO",
    "Ruxolitinib": "N#CC[C@H](C1CCCC1)n1cc(-c2ncnc3[nH]ccc23)cn1",
    "Busulfan": "CS(=O)(=O)OCCCCOS(C)(=O)=O",
}


def test_morgan_bits_match_rdkit_generator_and_layout():
    fps = morgan_fingerprints(SMILES)
    assert fps.shape == (4, 1024) and fps.dtypes.unique().tolist() == [np.uint8]
    assert fps.index.tolist() == list(SMILES) and fps.index.name == "drug"
    generator = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=1024)
    for drug, smiles in SMILES.items():
        on = set(generator.GetFingerprint(Chem.MolFromSmiles(smiles)).GetOnBits())
        assert set(np.flatnonzero(fps.loc[drug].to_numpy())) == on


def test_morgan_radius0_ethanol_has_one_bit_per_atom_environment():
    # ethanol: three heavy atoms with distinct invariants (CH3, CH2, OH) -> 3 bits at radius 0;
    # the same molecule written differently gives the same bits.
    fps = morgan_fingerprints({"a": "CCO", "b": "OCC"}, radius=0, n_bits=2048)
    assert fps.loc["a"].sum() == 3
    assert (fps.loc["a"] == fps.loc["b"]).all()


@pytest.mark.parametrize("bad", ["C1CC(", "not a smiles", "", None, float("nan")])
def test_invalid_or_missing_smiles_names_drug_file_and_field(bad):
    with pytest.raises(SchemaError) as error:
        morgan_fingerprints({"Belinostat": SMILES["Belinostat"], "Drug X": bad}, source="drugs.tsv")
    message = str(error.value)
    assert "Drug X" in message and "drugs.tsv" in message and "'smiles'" in message
    assert "Belinostat" not in message


def test_tanimoto_matches_rdkit_and_hand_values():
    fps = morgan_fingerprints(SMILES)
    sim = tanimoto_matrix(fps)
    generator = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=1024)
    vectors = [generator.GetFingerprint(Chem.MolFromSmiles(s)) for s in SMILES.values()]
    for i, drug in enumerate(SMILES):
        np.testing.assert_allclose(
            sim.loc[drug].to_numpy(), DataStructs.BulkTanimotoSimilarity(vectors[i], vectors)
        )
    assert (
        sim.loc["Belinostat", "Dacinostat"] > sim.loc["Belinostat", "Busulfan"]
    )  # shared hydroxamate
    hand = pd.DataFrame([[1, 1, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]], index=["p", "q", "empty"])
    expected = np.array([[1, 1 / 3, 0], [1 / 3, 1, 0], [0, 0, 0]])
    np.testing.assert_allclose(tanimoto_matrix(hand).to_numpy(), expected)


def test_cosine_matrix_hand_values():
    emb = pd.DataFrame([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]], index=["a", "b", "zero"])
    expected = np.array([[1, 1 / np.sqrt(2), 0], [1 / np.sqrt(2), 1, 0], [0, 0, 0]])
    sim = cosine_matrix(emb)
    np.testing.assert_allclose(sim.to_numpy(), expected)
    assert sim.index.tolist() == ["a", "b", "zero"]


def test_structure_embedding_default_and_unimol_hook():
    pd.testing.assert_frame_equal(structure_embedding(SMILES), morgan_fingerprints(SMILES))
    with pytest.raises(RuntimeError, match="UniMol weights.*not available offline"):
        structure_embedding(SMILES, encoder="unimol")
    with pytest.raises(ValueError, match="unknown structure encoder 'ecfp'"):
        structure_embedding(SMILES, encoder="ecfp")


def test_dose_scale_hand_values():
    assert dose_scale(0, 10) == 0
    assert dose_scale(10, 10) == pytest.approx(1.0)
    assert dose_scale(1, 10) == pytest.approx(np.log(2) / np.log(11))
    assert dose_scale(1, 0) == pytest.approx(np.log(2))


def test_drug_features_single_and_combination_sum():
    fps = morgan_fingerprints(SMILES)
    bel, rux = fps.loc["Belinostat"].to_numpy(float), fps.loc["Ruxolitinib"].to_numpy(float)
    single = drug_features("Belinostat", "1", fps, max_dose=10)
    assert single.dtype == np.float32 and single.shape == (2048,)
    np.testing.assert_allclose(
        single, np.concatenate([bel * np.log(2) / np.log(11), bel]), rtol=1e-6
    )
    combo = drug_features("Belinostat+Ruxolitinib", "1+10", fps, max_dose=10)
    expected = np.concatenate([bel * np.log(2) / np.log(11) + rux * 1.0, bel + rux])
    np.testing.assert_allclose(combo, expected, rtol=1e-6)
    np.testing.assert_array_equal(
        combo, drug_features("Ruxolitinib+Belinostat", "10+1", fps, max_dose=10)
    )


def test_drug_features_errors():
    fps = morgan_fingerprints(SMILES)
    with pytest.raises(ValueError, match="2 components but dose '1' has 1"):
        drug_features("Belinostat+Busulfan", "1", fps)
    with pytest.raises(SchemaError, match="drug 'Unknown'"):
        drug_features("Belinostat+Unknown", "1+1", fps)
