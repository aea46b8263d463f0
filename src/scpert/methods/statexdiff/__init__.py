"""StateXDiff (arXiv:2605.16104): the spec here; the package holds the denoiser (:mod:`.model`),
training (:mod:`.train`), interaction-aware guided DDIM (:mod:`.sample`) and the Method
(:mod:`.method`).

Presets: ``paper`` = App. A.5 Tables 6, 7 and 9 plus this project's choices where the paper is
silent (marked below); ``tiny`` = the CPU default of ``config/config.yaml``: the same architecture
and objective, narrower, shallower, fewer tokens, fewer steps.

Variants (ablations of §5.4 Table 2, switches of the full model):

==================  ===================================================================
``use_vmcs: false`` "w/o VMCS": the cell condition is the raw latent ``z_c`` projected to
                    ``K_s`` shared tokens; the protein tokens are the learned null, q = 1
``use_protein:      "w/o pseudo-protein": VMCS tokens computed with ``g_p = 0`` and q = 0 (the
false``             protein branch removed), protein tokens the learned null
``use_pqm: false``  "w/o PQM": q_i = 1 for every cell (no reliability gate)
``drug_encoder:     "w/o MDT": a structure-only drug encoder (Morgan bits -> MLP -> K_d
structure``         tokens) trained from scratch, no mechanism priors
``lambda_triplet:   "w/o triplet"
0``
``guidance: cfg``   "w/o ICFG": monolithic CFG ``(1 + w) v(c, d) - w v(0)``
``protein_source``  Fig. 3c / App. B.4 arms: ``pseudo`` (the paper's model, PseudoProt-ZS),
                    ``measured`` (TrueProt: g_p = measured ADT, q = 1), ``finetuned``
                    (TrueProt-FT: the translator fine-tuned on the split's training cells);
                    :mod:`scpert.priors.protein_sources`
==================  ===================================================================

Priors (:data:`scpert.layout.PRIORS`): ``latent`` and, with ``drug_encoder: mdt``, ``mdt``; the
VMCS path (``use_vmcs``) adds ``vmcs`` and, with ``use_protein``, ``protein``; with
``protein_source: measured`` / ``finetuned`` these two are ``vmcs_measured`` +
``protein_measured`` / ``vmcs_finetuned`` + ``protein_finetuned`` (:func:`protein_priors`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from scpert.methods.registry import MethodSpec, register_spec

#: App. A.5, Tables 6 (training), 7 (inference) and 9 (dimensions); then this project's choices.
PAPER: dict[str, Any] = {
    # Table 6: architecture
    "hidden": 768,  # H
    "depth": 12,  # L DiT blocks
    "heads": 12,  # head dim 64
    "ffn_ratio": 4,  # SwiGLU 4H (Table 9)
    "shared_tokens": 25,  # K_s (Table 4/9)
    "protein_tokens": 10,  # K_p
    "drug_tokens": 35,  # K_d (= the MDT prior's n_tokens)
    "time_frequency_dim": 256,  # A.4 "256-dim sinusoidal PE followed by a 2-layer MLP"
    "gate": "scalar",  # Eq. 29: gamma_l in R
    # Table 6: diffusion
    "num_timesteps": 1000,
    "schedule": "cosine",  # s = 0.008
    "prediction": "v",
    # Table 6: loss and structured dropout
    "lambda_triplet": 0.1,
    "triplet_margin": 0.1,
    "p_uncond": 0.05,
    "p_cell_only": 0.05,
    "p_drug_only": 0.05,
    # Table 6: optimisation
    "batch_size": 512,
    "epochs": 200,
    "steps": 0,  # 0: epochs x training cells / batch size
    "lr": 1e-4,
    "betas": [0.9, 0.999],
    "weight_decay": 0.01,
    "warmup_fraction": 0.05,  # cosine with 5 % linear warm-up
    "grad_clip": 1.0,
    "ema_decay": 0.9999,
    "mixed_precision": "bf16",  # bf16 on GPUs; none on CPU (scpert.generative.trainer)
    # Table 7: inference
    "sampler_steps": 50,
    "eta": 0.0,
    "w_c": 1.0,
    "w_d": 1.5,
    "w_cd": 2.0,
    "sample_batch_size": 64,
    # variants (module docstring); the defaults are the full model
    "use_vmcs": True,
    "use_protein": True,
    "use_pqm": True,
    "drug_encoder": "mdt",
    "guidance": "interaction",
    "protein_source": "pseudo",  # Fig. 3c arms (module docstring); the paper's model: pseudo
    # --- not given in the paper: this project's choices
    "cfg_scale": 2.0,  # "w/o ICFG": the single CFG weight (= w_cd)
    "cross_attention_heads": 12,  # Eq. 11 XAttn heads (H / 64)
    "structure_hidden": 1024,  # "w/o MDT" structure encoder hidden width
    "fingerprint_bits": 1024,  # "w/o MDT" Morgan bits (radius 2)
    "target_scaling": "standardise",  # delta z per dimension by its training mean / std
    "effect": "decoded",  # x^_p = D(z_c + delta z) (§3.1); "decoded_difference": x_c + D(.) - D(z_c)
    "checkpoint_every": 5000,
    # sizes for `scpert describe` (no data): VMCS token width, MDT token width
    "describe_token_dim": 512,  # D (Table 4 "projection dim")
    "describe_drug_dim": 512,  # MDT shared embedding width (Table 5)
}

#: the CPU preset of config/config.yaml (measured in docs/decisions.md "StateXDiff tiny").
TINY: dict[str, Any] = {
    **PAPER,
    "hidden": 32,
    "depth": 2,
    "heads": 2,
    "shared_tokens": 4,
    "protein_tokens": 2,
    "drug_tokens": 5,  # the MDT prior's 35 tokens mean-pooled in 5 groups of 7
    "time_frequency_dim": 64,
    "cross_attention_heads": 2,
    "structure_hidden": 64,
    "batch_size": 128,
    "steps": 200,
    "lr": 2e-3,
    "ema_decay": 0.99,
    "mixed_precision": "auto",
    "sampler_steps": 5,
    "sample_batch_size": 4096,
    "checkpoint_every": 0,
    "describe_token_dim": 64,
    "describe_drug_dim": 64,
}

CHOICES = {
    "schedule": ("cosine", "linear_vp"),
    "prediction": ("v", "eps", "x0"),
    "gate": ("scalar", "channel"),
    "drug_encoder": ("mdt", "structure"),
    "guidance": ("interaction", "cfg", "none"),
    "target_scaling": ("standardise", "none"),
    "effect": ("decoded", "decoded_difference"),
    "mixed_precision": ("auto", "fp16", "bf16", "fp32"),
    "use_vmcs": (True, False),
    "use_protein": (True, False),
    "use_pqm": (True, False),
    "protein_source": ("pseudo", "measured", "finetuned"),
}

#: protein_source -> (protein prior, VMCS prior); as scpert.priors.protein_sources.PRIOR_NAMES
#: (kept here so that the spec imports nothing heavy; a test checks they agree)
PROTEIN_PRIORS: dict[str, tuple[str, str]] = {
    "pseudo": ("protein", "vmcs"),
    "measured": ("protein_measured", "vmcs_measured"),
    "finetuned": ("protein_finetuned", "vmcs_finetuned"),
}


def protein_priors(params: Mapping[str, Any]) -> tuple[str, str]:
    """``(protein prior, VMCS prior)`` names of a resolved configuration: the protein source's
    with ``use_protein``, else the pseudo-protein pair (VMCS w/o protein zeroes g_p anyway)."""
    source = params["protein_source"] if params["use_protein"] else "pseudo"
    return PROTEIN_PRIORS[source]


def required_priors(params: Mapping[str, Any]) -> tuple[str, ...]:
    """The priors of a resolved StateXDiff configuration (module docstring)."""
    names = ["latent"]
    if params["drug_encoder"] == "mdt":
        names.append("mdt")
    if params["use_vmcs"]:
        protein, vmcs = protein_priors(params)
        names.append(vmcs)
        if params["use_protein"]:
            names.append(protein)
    return tuple(names)


register_spec(
    MethodSpec(
        "statexdiff",
        "scpert.methods.statexdiff.method",
        {"tiny": TINY, "paper": PAPER},
        uses_gpu=True,
        priors=required_priors,
        choices=CHOICES,
        summary="latent residual diffusion on VMCS cell and MDT drug tokens, interaction-aware CFG",
        predicts_plates=True,
        test_overrides={
            "steps": 30,
            "batch_size": 32,
            "hidden": 16,
            "depth": 1,
            "heads": 2,
            "cross_attention_heads": 2,
            "sampler_steps": 3,
            "time_frequency_dim": 16,
            "structure_hidden": 16,
            "fingerprint_bits": 128,
        },
    )
)
