"""scPPDM (anonymous ICLR submission under double-blind review; no arXiv id; cited as scPPDM with
its section numbers, e.g. scPPDM §3.2): the spec here; the package holds the networks
(:mod:`.model`), training (:mod:`.train`), guided sampling (:mod:`.sample`), the Method
(:mod:`.method`) and the dose-monotonicity analysis (:mod:`.analysis`).

Presets: ``paper`` = scPPDM App. D plus this project's choices where the paper is silent (marked
below): the paper's model diffuses ``z0 = E(x_post)`` and decodes ``x^ = D(z^_0)`` without a clip
(§3.1). ``tiny`` = the CPU default of ``config/config.yaml``. The residual target with the x0 clip
and decoder-difference effect is the named variant ``scppdm_residual`` (:data:`RESIDUAL`).
"""

from __future__ import annotations

from typing import Any

from scpert.methods.registry import MethodSpec, register_spec

#: scppdm.txt App. D ("Hyperparameters and training setup"), then choices the paper leaves open.
PAPER: dict[str, Any] = {
    # four-state decomposed training
    "p_drop_pre": 0.10,
    "p_drop_drug": 0.10,
    "dropout": 0.15,  # global dropout in the network
    # noise schedule and sampling: VP-linear, DDIM
    "schedule": "linear_vp",
    "prediction": "eps",
    # factorised guidance: s_p and the dose-to-strength mapping
    "s_p": 1.0,
    "s0": 3.0,
    "alpha": 2.0,
    "gamma": -0.5,
    # loss weighting
    "lambda_align": 0.10,
    "lambda_info": 0.05,
    "tau": 0.1,
    "loss_warmup_fraction": 0.2,
    # optimisation
    "lr": 1e-4,
    "weight_decay": 1e-5,
    "betas": [0.9, 0.95],
    "warmup_steps": 3000,
    "batch_size": 1024,  # global batch (4 GPUs x 256)
    "mixed_precision": "fp16",  # "FP16 mixed precision"; none on CPU (scpert.generative.trainer)
    "gpus": 4,  # "4x80 GB GPUs (data parallel)": torchrun inside the train job
    "grad_clip": 1.0,
    "ema_decay": 0.999,
    # drug representation and dose modulation
    "drug_mapper": [1024, 512, 256, 128],
    "drug_dropout": 0.15,
    "dose_film_hidden": 128,
    "fingerprint_bits": 1024,
    "fingerprint_radius": 2,
    # InfoNCE
    "n_negatives": 1024,
    "memory_bank": 16384,
    # --- not given in the paper: this project's choices
    "steps": 100_000,
    "num_timesteps": 1000,  # DDPM linear betas
    "beta_start": 1e-4,
    "beta_end": 0.02,
    "sampler_steps": 50,
    "sampler_spacing": "respaced",
    "samples_per_unit": 1,  # model samples per (condition, plate); its cells are shared among them
    "eta": 0.0,
    "clip_x0": None,  # no x0 clip (§3.1); scppdm_residual clips standardised latents at 5
    "tokens": 8,  # M tokens of width D_z / M
    "heads": 2,
    "depth": 4,
    "cond_dim": 128,  # D_c
    "cond_tokens": 1,  # the "compact condition token"
    "time_dim": 128,
    "mlp_hidden": 512,  # Concat+MLP ablation
    "target": "post",  # diffuse z0 = E(x_post) (§3.1); "residual": z0 - z_pre
    "effect": "decoded",  # x^ = D(z^_0) (§3.1); "decoded_difference": D(z^_0) - D(z_pre)
    "checkpoint_every": 5000,  # trainer checkpoints (resume after a failed job)
    # latent fine-tuning on the training pseudobulks (§4; steps and lr not given in the paper)
    "latent_steps": 3000,
    "latent_lr": 1e-4,
    "latent_batch_size": 256,
    # --- ablations (App. F); the defaults are the full model
    "conditioning": "dual",
    "injection": "gd_attn",
    "drug_encoder": "morgan",
    "guidance": "dual_knob",
    "dose_to_strength": "sigmoid",
    # sizes for `scpert describe` (no data): genes of the L_align projection, drugs of drug_id
    "describe_n_genes": 5000,
    "describe_n_drugs": 379,  # Tahoe-100M public release
}

#: the CPU preset of config/config.yaml: the paper's model, small and briefly trained. Measured on
#: the default world (docs/decisions.md): 500 steps at lr 2e-3 without dropout and with EMA 0.99
#: reach the pair_ood scores of 1,500 steps at lr 1e-3 with dropout 0.15 and EMA 0.995, in a
#: third of the CPU time; cells are drawn from 4 model samples per (condition, plate).
TINY: dict[str, Any] = {
    **PAPER,
    "steps": 500,
    "batch_size": 128,
    "lr": 2e-3,
    "warmup_steps": 50,
    "dropout": 0.0,
    "drug_dropout": 0.0,
    "mixed_precision": "auto",
    "gpus": 1,
    "ema_decay": 0.99,
    "n_negatives": 64,
    "memory_bank": 2048,
    "sampler_steps": 25,
    "samples_per_unit": 4,
    "depth": 2,
    "checkpoint_every": 0,
    "latent_steps": 250,
    "latent_lr": 1e-3,
    "latent_batch_size": 128,
    "describe_n_genes": 800,
    "describe_n_drugs": 24,
}

CHOICES = {
    "conditioning": ("dual", "none"),
    "injection": ("gd_attn", "concat_mlp", "concat_attn"),
    "drug_encoder": ("morgan", "drug_id"),
    "guidance": ("dual_knob", "single"),
    "dose_to_strength": ("sigmoid", "constant"),
    "schedule": ("linear_vp", "cosine"),
    "prediction": ("eps",),
    "target": ("post", "residual"),
    "effect": ("decoded", "decoded_difference"),
    "sampler_spacing": ("respaced", "truncated"),
    "mixed_precision": ("auto", "fp16", "bf16", "fp32"),
}

#: the named variant ``scppdm_residual`` (config/config.yaml): diffuse ``z0 - z_pre``, clip the
#: standardised x0 prediction at 5 and shift cells by ``D(z^_0) - D(z_pre)``
RESIDUAL: dict[str, Any] = {"target": "residual", "clip_x0": 5.0, "effect": "decoded_difference"}


register_spec(
    MethodSpec(
        "scppdm",
        "scpert.methods.scppdm.method",
        {"tiny": TINY, "paper": PAPER},
        uses_gpu=True,
        priors=("latent",),
        choices=CHOICES,
        summary="latent diffusion with dual-channel conditioning and dose-controlled guidance",
        predicts_plates=True,
        test_overrides={
            "steps": 30,
            "batch_size": 32,
            "warmup_steps": 5,
            "depth": 1,
            "sampler_steps": 3,
            "tokens": 2,
            "drug_mapper": [1024, 32, 16],
            "cond_dim": 16,
            "time_dim": 16,
            "n_negatives": 16,
            "memory_bank": 64,
            "mlp_hidden": 32,
            "latent_steps": 5,
            "samples_per_unit": 2,
        },
    )
)
