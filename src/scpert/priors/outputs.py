"""Output folders of the prior rules: their files, formats, writers and readers (no torch needed).

Each prior is one folder (:func:`scpert.layout.prior_dir`): ``results/{dataset}/priors/graph/``
(rule pretrain_graph, dataset level) and ``results/{dataset}/{split}/priors/mdt/`` (rule
pretrain_mdt, split level). File names are the constants below.

Files of the ``graph`` prior
``drug_bio_emb.parquet`` (:data:`GRAPH_EMBEDDINGS`)
    Columns ``drug`` and ``z0 .. z{P-1}`` (float32): z_b, the frozen L2-normalised graph
    embedding of every drug of the drug table(s) (P = ``hidden``; 256 in the paper preset).
``metrics.tsv`` (:data:`GRAPH_METRICS`)
    ``metric, value``: graph sizes, held-out DTI AUROC, final loss, epochs, seconds, device.

Files of the ``mdt`` prior
``drug_tokens.npz`` (:data:`MDT_TOKENS`; read with :func:`load_drug_tokens`)
    One row per drug with a structure, in the order of ``drug``:

    ``drug`` (n,) str; ``role`` (n,) str: ``train`` (MDT trained on it), ``val`` (early-stopping
    drug, not trained on), ``held_out`` (a drug of the split's test conditions: never trained on;
    its L1000 views, if any, are only encoded), ``unused`` (no L1000 view and no graph
    embedding); ``in_single_cell`` (n,) bool (a component of a condition of the split table);
    ``n_views`` (n,) int (L1000 views fused into the template; 0: structure only);
    ``z_struct`` (n, D) float32: z_s, L2-normalised (structure encoder alone); ``z_drug`` (n, D)
    float32: the template's embedding, z_s fused with the drug's views
    (:mod:`scpert.priors.mdt`, "Drug templates": trained drugs with their training views,
    held-out drugs with L1000 views with those views through the frozen expression encoder,
    structure-only drugs z_s); ``tokens`` (n, K_d, D) float32: T_d = f_tok(z_drug), K_d =
    ``n_tokens`` (35), D = the shared embedding width (512 in the paper preset); ``e_drug`` (n, P)
    float32: psi_d(z_drug), the projection head distilled towards z_b; ``response`` (n, L)
    float32: the L1000 response (landmark z-scores) decoded from the tokens;
    ``landmarks`` (L,) str: landmark symbols (columns of ``response``);
    ``landmark_gene_index`` (L,) int: position of each landmark in the split's ``genes.tsv``
    (-1 when the dataset lacks it), the symbol mapping of L1000 onto the dataset.

    No dose is applied: StateXDiff scales the drug context at the last step (Eq. 10),
    ``c_drug = log(1 + dose) * (T_d, e_drug)`` with the dose in the dataset's unit (uM); for a
    combination ``A+B`` each component's context is scaled by its own dose.
``model.pt`` (:data:`MDT_MODEL`)
    ``{"state_dict", "params", "struct_dim", "n_genes", "bio_dim", "landmarks"}``: the trained
    MDT, to embed further drugs (zero-shot) with :func:`scpert.priors.mdt.load_mdt`.
``history.tsv`` (:data:`MDT_HISTORY`)
    One row per epoch: ``epoch``, the mean training losses, and ``val_*`` validation scores on
    the epochs that evaluate (``eval_every``).

The evaluation table (rule evaluate_priors, ``results/{dataset}/{split}/priors_eval.tsv``)
``priors_eval.tsv``
    ``dataset, split, metric, embedding, value, n, n_candidates``. ``moa_top1``/``moa_top5``:
    for each held-out drug with a MoA, the fraction of its k nearest training drugs (MDT
    ``train`` + ``val`` drugs with a MoA) that share it, averaged over held-out drugs;
    embeddings ``mdt`` (cosine of z_drug, the template), ``mdt_struct`` (cosine of z_struct, the
    structure encoder alone), ``mdt_e_drug`` (cosine of e_drug), ``morgan`` (Tanimoto of the raw
    Morgan bits), ``graph`` (cosine of z_b; uses DTI, not structure) and ``random`` (expected
    value of a random ranking). ``moa_top1_mismatch``/``moa_top5_mismatch`` (only when the drug
    table has a ``scaffold`` column, as the synthetic world's): the same over the held-out drugs
    whose MoA differs from their scaffold group (activity cliffs). ``dti_auroc`` (embedding
    ``graph``): held-out DTI pairs against random non-target genes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from scpert.data.schema import SchemaError
from scpert.runtime import write_atomic

GRAPH_EMBEDDINGS = "drug_bio_emb.parquet"
GRAPH_METRICS = "metrics.tsv"
MDT_TOKENS = "drug_tokens.npz"
MDT_MODEL = "model.pt"
MDT_HISTORY = "history.tsv"

#: values of ``role`` in ``drug_tokens.npz``
ROLES = ("train", "val", "held_out", "unused")
TOKEN_ARRAYS = (
    "drug",
    "role",
    "in_single_cell",
    "n_views",
    "tokens",
    "e_drug",
    "z_struct",
    "z_drug",
    "response",
    "landmarks",
    "landmark_gene_index",
)


def write_drug_embeddings(table: pd.DataFrame, path) -> None:
    """z_b table (index ``drug``, columns ``z0..``) -> parquet with a ``drug`` column."""
    write_atomic(path, lambda tmp: table.reset_index().to_parquet(tmp, index=False))


def read_drug_embeddings(path) -> pd.DataFrame:
    """Inverse of :func:`write_drug_embeddings`: index ``drug``, float32 columns ``z0..``."""
    table = pd.read_parquet(path)
    if "drug" not in table.columns:
        raise SchemaError(f"{path}: column 'drug' is missing")
    return table.set_index("drug").astype(np.float32)


def write_drug_tokens(arrays: dict[str, np.ndarray], path) -> None:
    """``drug_tokens.npz`` from the arrays named in :data:`TOKEN_ARRAYS` (atomic)."""
    missing = [name for name in TOKEN_ARRAYS if name not in arrays]
    if missing:
        raise ValueError(f"drug tokens: arrays {missing} are missing")

    def save(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.savez(handle, **{name: arrays[name] for name in TOKEN_ARRAYS})

    write_atomic(path, save)


def load_drug_tokens(path) -> dict[str, np.ndarray]:
    """The arrays of ``drug_tokens.npz`` by name (see the module docstring)."""
    with np.load(path, allow_pickle=False) as f:
        missing = [name for name in TOKEN_ARRAYS if name not in f.files]
        if missing:
            raise SchemaError(f"{path}: arrays {missing} are missing")
        return {k: f[k] for k in f.files}
