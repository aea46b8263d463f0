"""scPPDM (anonymous ICLR submission under double-blind review; no arXiv id; cited as scppdm.txt
with its section numbers): the spec here, the model in :mod:`scpert.methods.scppdm.method`
(read its docstring for the method itself).

Presets: ``paper`` = scppdm.txt App. D plus this project's choices where the paper is silent
(marked below); ``tiny`` = the CPU default of ``config/config.yaml``.
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
    "mixed_precision": True,  # FP16
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
    "eta": 0.0,
    "clip_x0": 5.0,  # DDIM x0 clip on standardised latents
    "tokens": 8,  # M tokens of width D_z / M
    "heads": 2,
    "depth": 4,
    "cond_dim": 128,  # D_c
    "cond_tokens": 1,  # the "compact condition token"
    "time_dim": 128,
    "mlp_hidden": 512,  # Concat+MLP ablation
    "cpu_threads": 0,  # torch threads while fitting/sampling on CPU; 0 = torch's default
    "target": "residual",  # diffuse z0 - z_pre ("residual") or z0 itself ("post", §3.1 literal)
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

TINY: dict[str, Any] = {
    **PAPER,
    "steps": 1500,
    "batch_size": 128,
    "lr": 1e-3,
    "warmup_steps": 100,
    "mixed_precision": False,
    "ema_decay": 0.995,
    "n_negatives": 256,
    "memory_bank": 2048,
    "sampler_steps": 25,
    "depth": 2,
    "cpu_threads": 1,  # tiny tensors: extra threads only add synchronisation (20x slower when
    # the cores are shared with other jobs)
    "describe_n_genes": 800,
    "describe_n_drugs": 24,
}

CHOICES = {
    "conditioning": ("dual", "none"),
    "injection": ("gd_attn", "concat_mlp"),
    "drug_encoder": ("morgan", "drug_id"),
    "guidance": ("dual_knob", "single"),
    "dose_to_strength": ("sigmoid", "constant"),
    "schedule": ("linear_vp", "cosine"),
    "prediction": ("eps",),
    "target": ("residual", "post"),
}


register_spec(
    MethodSpec(
        "scppdm",
        "scpert.methods.scppdm.method",
        {"tiny": TINY, "paper": PAPER},
        uses_gpu=True,
        priors=("latent",),
        choices=CHOICES,
        summary="latent diffusion with dual-channel conditioning and dose-controlled guidance",
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
        },
    )
)
