"""scpert.generative.trainer: schedules, parameter groups, EMA, validation, progress, resume of a
killed train job, and data parallel (torchrun, gloo on CPU)."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from scpert.generative.trainer import (
    Batch,
    TrainConfig,
    Trainer,
    autocast_settings,
    lr_multiplier,
    parameter_groups,
)

from .conftest import REPO, make_raw

WORKER = Path(__file__).with_name("ddp_worker.py")


# ------------------------------------------------------------------------------ schedules
def test_linear_schedule_warms_up_then_decays_to_the_floor():
    cfg = TrainConfig(steps=11, lr=1.0, warmup_steps=4, lr_schedule="linear")
    values = [lr_multiplier(s, cfg) for s in range(11)]
    assert values[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    # after warm-up: 1 at step 4, linear to 0 at the last step (10): (10 - s) / 6
    assert values[4:] == pytest.approx([(10 - s) / 6 for s in range(4, 11)])
    floor = TrainConfig(steps=11, lr=1.0, warmup_steps=4, lr_floor=0.1)
    assert lr_multiplier(10, floor) == pytest.approx(0.1)
    assert lr_multiplier(7, floor) == pytest.approx(0.1 + 0.9 * 0.5)


def test_cosine_schedule_with_warmup_and_floor():
    cfg = TrainConfig(steps=201, lr=1.0, warmup_steps=100, lr_schedule="cosine", lr_floor=0.1)
    assert lr_multiplier(0, cfg) == pytest.approx(0.01)
    assert lr_multiplier(99, cfg) == pytest.approx(1.0)
    assert lr_multiplier(100, cfg) == pytest.approx(1.0)
    assert lr_multiplier(150, cfg) == pytest.approx(0.1 + 0.9 * 0.5)  # half way: cos(pi/2) = 0
    assert lr_multiplier(200, cfg) == pytest.approx(0.1)
    steps = [lr_multiplier(s, cfg) for s in range(100, 201)]
    assert all(a >= b for a, b in zip(steps, steps[1:]))
    const = TrainConfig(steps=10, lr=1.0, warmup_steps=2, lr_schedule="constant")
    assert [lr_multiplier(s, const) for s in (0, 1, 5, 9)] == [0.5, 1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="lr_schedule"):
        TrainConfig(steps=1, lr=1.0, lr_schedule="step")


def test_no_weight_decay_on_biases_and_norms():
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.PReLU(), nn.Linear(4, 2))
    model.null = nn.Parameter(torch.zeros(4))
    decay, no_decay = parameter_groups(model, 0.01)
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    assert {id(p) for p in decay["params"]} == {id(model[0].weight), id(model[3].weight)}
    assert len(no_decay["params"]) == 6  # 2 biases, LN weight + bias, PReLU slope, null vector


def test_mixed_precision_is_off_on_cpu():
    for precision in ("auto", "fp16", "bf16", "fp32"):
        assert autocast_settings(torch.device("cpu"), precision)[0] is False


# -------------------------------------------------------------------------------- the loop
def _regression(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 3, generator=g)
    y = X @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.3
    return X, y


def _fns(X, y, batch_size=16):
    def batch(step, g):
        return Batch({"rows": torch.randint(0, len(X), (batch_size,), generator=g)})

    def loss(model, b, step):
        rows = b.rows["rows"]
        err = (model(X[rows]) - y[rows]).pow(2).mean()
        return err, {"mse": err.detach()}

    return batch, loss


def _model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Dropout(0.1), nn.Linear(8, 1))


def test_trainer_fits_and_logs_progress(caplog):
    X, y = _regression()
    model = _model()
    cfg = TrainConfig(steps=200, lr=0.05, warmup_steps=10, grad_clip=1.0, log_seconds=0.0)
    with caplog.at_level(logging.INFO, logger="scpert.generative.trainer"):
        result = Trainer(model, cfg, name="toy").fit(*_fns(X, y))
    with torch.no_grad():
        assert (model(X) - y).pow(2).mean().item() < 0.05
    assert not model.training
    lines = [r.getMessage() for r in caplog.records if "steps/s" in r.getMessage()]
    assert len(lines) == 200  # log_seconds 0: every step
    assert lines[-1].startswith("toy: step 200/200 (100%), loss") and "ETA 0 s" in lines[-1]
    assert result.history["mse"][0] > 10 * result.history["mse"][-1]
    assert len(result.history["loss"]) == 100  # one mean per window of steps // 100


def test_ema_weights_are_the_final_weights():
    X, y = _regression()
    model, shadow_check = _model(), _model()
    cfg = TrainConfig(steps=20, lr=0.05, ema_decay=0.9, ema_every=2)
    trainer = Trainer(model, cfg)
    trainer.fit(*_fns(X, y))
    shadow_check.load_state_dict(trainer.ema.shadow)
    for a, b in zip(model.parameters(), shadow_check.parameters()):
        assert torch.equal(a, b)
    assert trainer.ema.calls == 20


def test_validation_selects_the_best_checkpoint():
    X, y = _regression()
    model = _model()
    snapshots = {}

    def validate(m):  # best at step 8 by construction
        snapshots[trainer.step] = {k: v.clone() for k, v in m.state_dict().items()}
        return abs(trainer.step - 8)

    trainer = Trainer(model, TrainConfig(steps=12, lr=0.05, val_every=4))
    result = trainer.fit(*_fns(X, y), validate=validate)
    assert sorted(snapshots) == [4, 8, 12] and result.best_step == 8 and result.best_value == 0
    for key, value in model.state_dict().items():
        assert torch.equal(value, snapshots[8][key])


def _run(steps_done, ckpt, X, y, **kw):
    cfg = TrainConfig(steps=30, lr=0.05, ema_decay=0.8, checkpoint_every=10, **kw)
    model = _model()
    trainer = Trainer(model, cfg, checkpoint_dir=ckpt, run_id="toy")
    batch, loss = _fns(X, y)

    def stop_early(b, step):
        if steps_done is not None and step + 1 == steps_done:
            raise KeyboardInterrupt  # a job killed right after its checkpoint at steps_done

    try:
        trainer.fit(batch, loss, after_step=stop_early)
    except KeyboardInterrupt:
        return None
    return model


def test_resume_in_process_gives_the_uninterrupted_weights(tmp_path):
    X, y = _regression()
    reference = _run(None, tmp_path / "a", X, y)
    assert _run(21, tmp_path / "b", X, y) is None  # stops after step 21; checkpoint at 20
    assert torch.load(tmp_path / "b/last.pt", weights_only=False)["step"] == 20
    resumed = _run(None, tmp_path / "b", X, y)
    for a, b in zip(reference.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
    # another run's checkpoint is ignored
    other = Trainer(
        _model(), TrainConfig(steps=30, lr=0.05), checkpoint_dir=tmp_path / "b", run_id="other"
    )
    assert other.try_resume() == 0


# --------------------------------------------------------------------- kill-and-resume job
def _train_inputs(tmp: Path) -> dict:
    """Files of a train job on a toy dataset: processed cells, split, genes, drugs, latent."""
    from scpert.data.preprocess import preprocess_counts
    from scpert.latent import LatentModel, save_model

    adata = preprocess_counts(make_raw(n_genes=30, cells=10), control="control")
    adata.write_h5ad(tmp / "processed.h5ad")
    obs = adata.obs.drop_duplicates("condition")
    split = pd.DataFrame(
        {
            "condition": obs["condition"].astype(str),
            "cell_line": obs["cell_line"].astype(str),
            "drug": obs["drug"].astype(str),
            "dose": obs["dose"].astype(str),
            "n_cells": 10,
            "split": np.where(obs["drug"].astype(str).str.contains("dF"), "test", "train"),
        }
    )
    split.to_csv(tmp / "split.tsv", sep="\t", index=False)
    pd.DataFrame({"gene": list(adata.var_names)}).to_csv(tmp / "genes.tsv", sep="\t", index=False)
    smiles = ["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1", "CCN(CC)CC", "CCCCO", "O=C(O)c1ccccc1O"]
    pd.DataFrame(
        {"drug": ["dA", "dB", "dC", "dD", "dE", "dF"], "smiles": smiles, "moa": "m", "targets": ""}
    ).to_csv(tmp / "drugs.tsv", sep="\t", index=False)
    torch.manual_seed(0)
    save_model(LatentModel(list(adata.var_names), 16, [32]).eval(), tmp / "latent")
    return {
        "h5ad": str(tmp / "processed.h5ad"),
        "split": str(tmp / "split.tsv"),
        "genes": str(tmp / "genes.tsv"),
        "drugs": str(tmp / "drugs.tsv"),
        "prior_latent": str(tmp / "latent"),
    }


TRAIN_JOB = """
import json, sys, torch
torch.set_num_threads(1)
from scpert import runtime, steps
spec = json.loads(sys.argv[1])
runtime.run_step(None, steps.train, spec["inputs"], spec["model_dir"], spec["entry"], "control", 0, "cpu")
"""


def _train_job(inputs: dict, model_dir: Path) -> subprocess.Popen:
    from scpert.methods.scppdm import TINY

    params = {
        **TINY,
        "steps": 150,
        "checkpoint_every": 10,
        "batch_size": 16,
        "tokens": 2,
        "depth": 1,
        "drug_mapper": [1024, 16],
        "dose_film_hidden": 8,
        "cond_dim": 16,
        "time_dim": 16,
        "n_negatives": 8,
        "memory_bank": 32,
        "sampler_steps": 2,
    }
    entry = {"name": "scppdm", "base": "scppdm", "preset": "tiny", "params": params}
    spec = json.dumps({"inputs": inputs, "model_dir": str(model_dir), "entry": entry})
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.Popen(
        [sys.executable, "-c", TRAIN_JOB, spec],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _weights(model_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(model_dir / "scppdm.pt", map_location="cpu", weights_only=False)["net"]


def test_a_killed_train_job_resumes_to_the_uninterrupted_weights(tmp_path):
    """Kill a real train job (the train step in a subprocess) after its first checkpoint; the
    rerun resumes from it and ends with the weights of an uninterrupted run (CPU)."""
    inputs = _train_inputs(tmp_path)
    straight = tmp_path / "straight/scppdm/model"
    proc = _train_job(inputs, straight)
    out = proc.communicate(timeout=600)[0]
    assert proc.returncode == 0, out[-3000:]
    assert not (straight.parent / "checkpoints").exists()  # removed on success

    killed = tmp_path / "killed/scppdm/model"
    checkpoint = killed.parent / "checkpoints/last.pt"
    proc = _train_job(inputs, killed)
    deadline = time.monotonic() + 600
    while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert checkpoint.exists() and not killed.exists()  # killed mid-way, no model
    step = torch.load(checkpoint, weights_only=False)["step"]
    assert 10 <= step < 150

    proc = _train_job(inputs, killed)
    out = proc.communicate(timeout=600)[0]
    assert proc.returncode == 0, out[-3000:]
    assert "resumed from" in out and f"after step {step}" in out
    a, b = _weights(straight), _weights(killed)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


# ------------------------------------------------------------------------------------- DDP
def _torchrun(n: int, out: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={n}",
        str(WORKER),
        str(out),
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


def test_two_gloo_processes_match_one_process_on_the_same_global_batch(tmp_path):
    _torchrun(1, tmp_path / "one.pt")
    _torchrun(2, tmp_path / "two.pt")
    one = torch.load(tmp_path / "one.pt", weights_only=True)
    two = torch.load(tmp_path / "two.pt", weights_only=True)
    init = torch.load(tmp_path / "one.pt.init", weights_only=True)
    for key in one:
        assert torch.allclose(one[key], two[key], atol=1e-6), key
        assert torch.equal(init[key], torch.load(tmp_path / "two.pt.init")[key])
    moved = max((one[k] - init[k]).abs().max().item() for k in one)
    assert moved > 1e-3  # training moved the weights, far beyond the tolerance
