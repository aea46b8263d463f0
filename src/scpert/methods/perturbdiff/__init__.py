"""PerturbDiff (arXiv:2602.19685): diffusion over cell populations with an MM-DiT denoiser, and
marginal pretraining. The spec here; the package holds the network (:mod:`.model`), the
conditions (:mod:`.covariates`), training and marginal pretraining (:mod:`.train`), sampling
(:mod:`.sample`) and the Method (:mod:`.method`).

Presets: ``paper`` = arXiv:2602.19685 §4, App. B.2, B.3, C.1 and, where the paper is silent, the
public code (``DeepGraphLearning/PerturbDiff``, ``src/models/cross_dit/``), marked below. Where the
paper and the code differ the paper's value is the preset and the code's an option: the
sequential MM-DiT block (eqs. 39-43; ``block: parallel`` is the code's MLP on the LN of the block
input), the MLP over ``[e_t ; e_y]`` (eq. 37; the code sums them), the energy distance of eq. 32
at weight 1 (``ed_weight: 0.5`` is the code's geomloss value), the respaced K-step DDIM
(``sampler_spacing: truncated`` is the code's t = K-1..0 start). ``tiny`` = the CPU default of
``config/config.yaml``: the paper's model, small and briefly trained, with EMA every step, the
code's MSE reduction, CFG weight w = 0 (the dropout is still trained) and one departure from
the paper's network, the control-residual output (``output: control_residual``: each sampled
cell is its token's control cell plus the predicted change), trained without control -> control
sets (docs/decisions.md "PerturbDiff tiny preset" and "PerturbDiff on cell_ood").

Variants (config entries with ``base: perturbdiff``): ``perturbdiff_ft`` (``init: pretrained``)
fine-tunes the network of the split-level prior ``perturbdiff_marginal`` (rule
``pretrain_perturbdiff``: the marginal model of §4.6 on the split's control cells and any
configured atlas), with the same architecture; ``perturbed_fraction`` keeps a share of each
training condition's perturbed cells (the low-data study of App. C.6,
``config/perturbdiff_lowdata.yaml``).
"""

from __future__ import annotations

from typing import Any

from scpert.methods.registry import MethodSpec, register_spec

#: the parameters that fix the network's shape: a pretrained prior and the method fine-tuning it
#: must agree on them (:func:`scpert.methods.perturbdiff.train.check_architecture`)
ARCHITECTURE = (
    "width",
    "depth",
    "heads",
    "mlp_ratio",
    "block",
    "qk_norm",
    "head",
    "drug_features",
    "fingerprint_bits",
    "fingerprint_radius",
    "input_scale",
)

#: arXiv:2602.19685 App. B.2, B.3, C.1 (and the public code where the paper is silent)
PAPER: dict[str, Any] = {
    # cell sets (§4.2, App. B.3): m cells of one (cell line, drug, dose, plate) with m controls of
    # the same (cell line, plate); m = 256 for PBMC / Tahoe-100M (code configs)
    "set_size": 256,
    "batch_sets": 8,  # sets per step: not in the paper (this project's choice)
    "control_sets": True,  # control groups are sets too (control -> control), as in the code's data
    "perturbed_fraction": 1.0,  # share of each training condition's perturbed cells (App. C.6)
    # MM-DiT (§4.5, App. B.3; code: d 512, depth 8, 8 heads, MLP ratio 4, qk RMSNorm)
    "width": 512,
    "depth": 8,
    "heads": 8,
    "mlp_ratio": 4.0,
    "block": "sequential",  # eqs. 39-43; "parallel": the code's block
    "qk_norm": True,
    "head": "relu",  # non-negative output head (App. B.2); "softplus"
    "output": "absolute",  # the head predicts the cell; "control_residual": its control cell + a change
    "input_scale": 10.0,  # network sees log1p(normalize_total) / 10, outputs x 10 (code)
    # covariate encoder (App. B.3): drug identity + structure features + dose vocabulary, cell
    # line, batch. The paper's frozen ChemBERTa [CLS] embedding is not available offline: Morgan
    # bits are the structure features; "morgan_mdt" adds StateXDiff's MDT template z_drug
    "drug_features": "morgan",
    "fingerprint_bits": 1024,
    "fingerprint_radius": 2,
    # diffusion (App. B.2): VP linear, T = 1000, x0-prediction
    "num_timesteps": 1000,
    "beta_start": 1e-4,
    "beta_end": 0.02,
    "lambda_mse": 1.0,  # eq. 30
    "ed_weight": 1.0,  # eq. 32 (code: geomloss "energy" = 0.5 x ED)
    "mse_reduction": "cell_sum",  # eq. 8: (1/m) sum_j ||x_j - x^_j||^2; "element_mean": the code
    "p_self_cond": 0.5,  # eq. 33
    "p_drop": 0.5,  # CFG dropout of the metadata (the control set is always kept)
    "guidance_scale": 1.0,  # eq. 35, w (code: 1.0)
    # sampling (App. B.2.2)
    "sampler": "ddim",  # | ddpm (fixed-large variance, code)
    "sampler_steps": 100,  # K
    "eta": 0.0,
    "sampler_spacing": "respaced",  # | truncated (code: t = K-1 .. 0 of the 1000-step schedule)
    # optimisation (App. C.1)
    "lr": 2e-4,
    "betas": [0.9, 0.98],
    "weight_decay": 0.01,
    "lr_schedule": "cosine",
    "warmup_steps": 200,
    "lr_floor": 0.1,
    "grad_clip": 1.0,
    "ema_decay": 0.99,
    "ema_every": 10,
    "steps": 20_000,
    "val_every": 2_000,  # best checkpoint on the validation conditions every 2k steps
    "val_sets": 64,  # validation sets scored (this project's choice)
    "val_sampler_steps": 20,  # DDIM steps of validation samples (this project's choice)
    "mixed_precision": "fp32",  # code: fp32
    "checkpoint_every": 2_000,
    # marginal pretraining (§4.6, App. C.1): same pipeline, control stream zeroed, context only
    "init": "scratch",  # | pretrained (the prior perturbdiff_marginal)
    "finetune_io": "keep",  # strategy (1) of App. C.1; "reinit": strategy (2)
    "pretrain_steps": 0,  # 0 = one epoch of the pretraining cells (App. C.1: end of first epoch)
    "pretrain_lr": 2e-4,
    # sizes for `scpert describe` (no data): Tahoe-100M (App. A, Tab. 1)
    "describe_n_genes": 2000,
    "describe_n_drugs": 1137,
    "describe_n_cell_lines": 50,
    "describe_n_plates": 14,
    "describe_n_doses": 4,
}

#: the CPU preset of config/config.yaml (docs/decisions.md "PerturbDiff tiny preset")
TINY: dict[str, Any] = {
    **PAPER,
    "set_size": 10,
    "batch_sets": 16,
    "width": 64,
    "depth": 2,
    "heads": 4,
    "drug_features": "morgan_mdt",
    "sampler_steps": 10,
    "mse_reduction": "element_mean",  # the code's: ED leads (§5.5); measured, docs/decisions.md
    # each sampled cell = its token's control cell + the predicted change (not in the paper):
    # cell_ood E-distance 2.56 -> 1.76 (benchmark), same cost; docs/decisions.md "PerturbDiff on cell_ood"
    "output": "control_residual",
    # no control -> control sets: with the residual they teach "the control's features -> no
    # change", which an unseen drug's features resemble (drug_ood E-distance 4.67 -> 4.14)
    "control_sets": False,
    "ema_decay": 0.98,  # 0.99 every 10 steps would keep 74 % of the initial weights at 300 steps
    "ema_every": 1,
    # w = 1 pushes past the truth an effect the 300-step model already predicts at full size on an
    # unseen cell line (cell_ood: E-distance 2.87 at w = 1, 2.48 at w = 0.5); with the
    # control-residual output w = 0 (the conditional branch alone) is best on cell_ood and drug_ood
    # and samples one branch instead of two; docs/decisions.md "PerturbDiff on cell_ood"
    "guidance_scale": 0.0,
    "lr": 4e-3,
    "warmup_steps": 20,
    "steps": 300,
    "val_every": 100,
    "val_sets": 16,
    "val_sampler_steps": 5,
    "mixed_precision": "auto",
    "checkpoint_every": 0,
    "pretrain_steps": 200,
    "pretrain_lr": 2e-3,
    "describe_n_genes": 800,
    "describe_n_drugs": 36,
    "describe_n_cell_lines": 4,
    "describe_n_plates": 3,
}

CHOICES = {
    "block": ("sequential", "parallel"),
    "head": ("relu", "softplus"),
    "output": ("absolute", "control_residual"),
    "drug_features": ("morgan", "morgan_mdt", "none"),
    "mse_reduction": ("cell_sum", "element_mean"),
    "sampler": ("ddim", "ddpm"),
    "sampler_spacing": ("respaced", "truncated"),
    "lr_schedule": ("cosine", "linear", "constant"),
    "mixed_precision": ("auto", "fp16", "bf16", "fp32"),
    "init": ("scratch", "pretrained"),
    "finetune_io": ("keep", "reinit"),
}

#: the split-level prior of marginal pretraining (scpert.layout.PRIORS, rule pretrain_perturbdiff)
MARGINAL_PRIOR = "perturbdiff_marginal"


def required_priors(params: dict[str, Any]) -> tuple[str, ...]:
    """The MDT templates when they are drug features; the marginal prior when fine-tuning."""
    priors = ["mdt"] if params["drug_features"] == "morgan_mdt" else []
    if params["init"] == "pretrained":
        priors.append(MARGINAL_PRIOR)
    return tuple(priors)


register_spec(
    MethodSpec(
        "perturbdiff",
        "scpert.methods.perturbdiff.method",
        {"tiny": TINY, "paper": PAPER},
        uses_gpu=True,
        priors=required_priors,
        choices=CHOICES,
        summary="diffusion over cell sets in gene space (MM-DiT), marginal pretraining optional",
        predicts_plates=True,
        test_overrides={
            "set_size": 4,
            "batch_sets": 4,
            "width": 16,
            "depth": 1,
            "heads": 2,
            "steps": 12,
            "val_every": 6,
            "val_sets": 4,
            "val_sampler_steps": 2,
            "sampler_steps": 3,
            "pretrain_steps": 4,
            "fingerprint_bits": 64,
        },
    )
)
