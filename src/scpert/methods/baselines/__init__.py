"""The simple baselines (DESIGN §8): specs here, classes in :mod:`.deltas` (numpy/scikit-learn)
and :mod:`.mlp` (torch), so that declaring them imports neither.

Definitions of each baseline: :mod:`scpert.methods.baselines.deltas`. Every baseline predicts
per (condition, plate) row (``predicts_plates``): its cells are the row plate's controls plus the
condition's shift (:mod:`scpert.data.pairing`).
"""

from scpert.methods.registry import MethodSpec, register_spec

DELTAS = "scpert.methods.baselines.deltas"
MLP = "scpert.methods.baselines.mlp"

NO_PARAMS = {"tiny": {}, "paper": {}}
FEATURES = {"radius": 2, "n_bits": 1024}  # Morgan fingerprints of base_reg / base_mlp

for name, summary in (
    ("base_control", "the target context's control cells"),
    ("train_mean", "control cells + the mean training shift"),
    ("perturb_mean", "control cells + the drug's mean shift across training contexts"),
    ("context_mean", "control cells + the context's mean training shift"),
    ("additive", "control cells + the sum of the components' single-drug shifts"),
):
    register_spec(MethodSpec(name, DELTAS, NO_PARAMS, summary=summary, predicts_plates=True))

register_spec(
    MethodSpec(
        "base_reg",
        DELTAS,
        {
            # scPerturBench chemical_baseReg.py: sklearn Ridge, default alpha 1
            "tiny": {**FEATURES, "alpha": 1.0, "n_context_pcs": 4, "describe_n_genes": 500},
            "paper": {**FEATURES, "alpha": 1.0, "n_context_pcs": 10, "describe_n_genes": 5000},
        },
        summary="ridge from drug structure x dose + context PCs to the shift",
        predicts_plates=True,
    )
)

register_spec(
    MethodSpec(
        "base_mlp",
        MLP,
        {
            "tiny": {
                **FEATURES,
                "hidden": [64],
                "epochs": 60,
                "batch_size": 32,
                "lr": 1e-3,
                "weight_decay": 0.0,
                "val_fraction": 0.0,
                "patience": 20,
                "min_delta": 1e-4,
                "n_context_pcs": 4,
                "describe_n_genes": 500,
            },
            # scPerturBench chemical_baseMLP.py: one hidden layer of 1024, Adam 1e-3, batch 128,
            # up to 200 epochs, 80/20 split with early stopping (patience 20, min delta 1e-4)
            "paper": {
                **FEATURES,
                "hidden": [1024],
                "epochs": 200,
                "batch_size": 128,
                "lr": 1e-3,
                "weight_decay": 0.0,
                "val_fraction": 0.2,
                "patience": 20,
                "min_delta": 1e-4,
                "n_context_pcs": 10,
                "describe_n_genes": 5000,
            },
        },
        summary="MLP from drug structure x dose + context PCs to the shift",
        predicts_plates=True,
        test_overrides={"epochs": 10, "hidden": [16]},
    )
)
