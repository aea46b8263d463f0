"""The protein sources of StateXDiff's protein-modality comparison (arXiv:2605.16104 §5.3 Fig. 3c,
App. B.4): where the per-cell protein prior's ``g_p`` comes from.

==============  =========================  ===================================================
source          priors (protein, VMCS)     g_p of every untreated cell
==============  =========================  ===================================================
``pseudo``      ``protein``, ``vmcs``      the translator's 128-d embedding (PseudoProt-ZS;
                                           rule ``infer_protein``, :mod:`scpert.priors.protein`)
``measured``    ``protein_measured``,      the cell's measured ADT levels (TrueProt, B.4
                ``vmcs_measured``          "measured surface proteins from the CITE-seq
                                           antibody panel"; rule ``measure_protein``)
``finetuned``   ``protein_finetuned``,     the embedding of the translator fine-tuned on the
                ``vmcs_finetuned``         split's training cells (TrueProt-FT, B.4 "fine-tuned
                                           on the training split only"; rules
                                           ``finetune_translator``, ``infer_protein_finetuned``)
==============  =========================  ===================================================

Every source writes the same :class:`scpert.priors.protein.CellProteins` folder, and VMCS
(:mod:`scpert.priors.vmcs`) is trained on it by the same rule body (``train_vmcs``), so the arms
differ only in the protein source (B.4 "the only differences across variants lie in the source
and utilization of the protein modality").

Measured proteins (``measured``)
    ``p_hat = g_p = log1p(ADT / cell total * median total)`` (:func:`scpert.priors.protein.
    protein_levels`, the translator's training target; the median over the prior's cells), so
    ``g_p`` is as wide as the panel and VMCS's phi_p maps the panel to D. ``q = 1``: PQM scores
    the reliability of *inferred* proteins from RNA-derived signals (§3.2, App. A.2.1); a measured
    protein is the reference PQM is validated against (App. A.2.3), so no cell is down-weighted
    and the protein tokens are never dropped to the learned null. B.4 projects the panel with "a
    learned linear layer"; here phi_p is VMCS's two-layer projector for every arm, so that the
    arms differ in the source only (docs/decisions.md "StateXDiff Fig. 3c").

Fine-tuned translator (``finetuned``)
    The dataset-level translator (prior ``translator``, kind ``scpert``) trained further, from its
    weights, on the CITE-seq cells that a model of the split may see
    (:func:`scpert.data.preprocess.train_cells_mask`: training conditions plus untreated cells),
    a seeded fraction held out to score the translator before and after (``finetune.json``).
    Settings: config ``priors.translator_finetune`` (``preset``, ``params``; :data:`FINETUNE`).
    Its folder is a translator folder (:func:`scpert.priors.protein.load_translator`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from scpert.errors import InputError

PSEUDO, MEASURED, FINETUNED = "pseudo", "measured", "finetuned"
SOURCES = (PSEUDO, MEASURED, FINETUNED)

#: protein source -> (protein prior, VMCS prior) of :data:`scpert.layout.PRIORS`
PRIOR_NAMES: dict[str, tuple[str, str]] = {
    PSEUDO: ("protein", "vmcs"),
    MEASURED: ("protein_measured", "vmcs_measured"),
    FINETUNED: ("protein_finetuned", "vmcs_finetuned"),
}

FINETUNE_JSON = "finetune.json"

#: fine-tuning settings of the translator (config ``priors.translator_finetune``)
FINETUNE: dict[str, dict[str, Any]] = {
    "tiny": {
        "steps": 150,
        "batch_size": 128,
        "lr": 3e-3,
        "weight_decay": 0.01,
        "heldout_fraction": 0.2,
        "seed": 0,
    },
    "paper": {
        "steps": 5000,
        "batch_size": 256,
        "lr": 2e-5,
        "weight_decay": 0.01,
        "heldout_fraction": 0.1,
        "seed": 0,
    },
}


def resolve_finetune(settings: dict | None) -> dict[str, Any]:
    """``priors.translator_finetune`` (``preset``, ``params``) resolved against :data:`FINETUNE`;
    unknown presets and keys name the config key."""
    settings = settings or {}
    preset = settings.get("preset", "tiny")
    if preset not in FINETUNE:
        raise InputError(f"config priors.translator_finetune.preset: unknown preset '{preset}'")
    overrides = settings.get("params") or {}
    unknown = sorted(set(overrides) - set(FINETUNE[preset]))
    if unknown:
        raise InputError(f"config priors.translator_finetune.params: unknown key(s) {unknown}")
    return {**FINETUNE[preset], **overrides}


def measured_cell_proteins(cells, adt_index, adt: np.ndarray, proteins, source: str):
    """The ``protein_measured`` prior of ``cells`` (processed.h5ad ids of the untreated cells):
    their rows of the CITE-seq ADT counts ``adt`` (rows named by ``adt_index``) as
    :class:`scpert.priors.protein.CellProteins` with ``p_hat = g_p`` = protein levels, ``q = 1``.
    A cell without an ADT row is an error naming ``source`` and the cell."""
    from scpert.priors.protein import CellProteins, protein_levels

    cells = [str(c) for c in cells]
    position = {str(c): i for i, c in enumerate(adt_index)}
    missing = [c for c in cells if c not in position]
    if missing:
        raise InputError(
            f"{source}: no ADT row (obsm['protein']) for {len(missing)} untreated cell(s) of the "
            f"processed data, e.g. {missing[:3]}: measured proteins need the CITE-seq cells "
            "themselves"
        )
    if not cells:
        raise InputError(f"{source}: no untreated cell to take measured proteins of")
    levels = protein_levels(np.asarray(adt)[[position[c] for c in cells]])
    return CellProteins(
        cells, levels, levels.copy(), np.ones(len(cells), np.float32), [str(p) for p in proteins]
    )
