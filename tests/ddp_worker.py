"""A data-parallel training run for tests/test_trainer.py, launched by torchrun (gloo on CPU).

Every rank builds the same model and data, draws the same global batches and trains its shard;
rank 0 writes the initial and final weights to ``<out>.init`` and ``<out>``.
"""

import sys

import torch
from torch import nn

from scpert.generative.distributed import init_process_group
from scpert.generative.trainer import Batch, TrainConfig, Trainer, distributed_context

torch.set_num_threads(1)
device = init_process_group("cpu")
rank, world = distributed_context()
g = torch.Generator().manual_seed(0)
X = torch.randn(64, 5, generator=g)
y = torch.sin(X @ torch.randn(5, 2, generator=g))
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(5, 16), nn.LayerNorm(16), nn.SiLU(), nn.Linear(16, 2))
if rank == 0:
    torch.save(model.state_dict(), sys.argv[1] + ".init")


def batch(step, generator):
    rows = torch.randint(0, len(X), (16,), generator=generator)
    return Batch({"x": X[rows], "y": y[rows], "noise": torch.randn(16, 2, generator=generator)})


def loss(net, b, step):
    err = (net(b.rows["x"]) - b.rows["y"] - 0.01 * b.rows["noise"]).pow(2).mean()
    return err, {}


cfg = TrainConfig(steps=40, lr=0.01, weight_decay=0.01, grad_clip=1.0, ema_decay=0.9, seed=0)
Trainer(model, cfg, device=device).fit(batch, loss)
if rank == 0:
    torch.save(model.state_dict(), sys.argv[1])
torch.distributed.destroy_process_group()
