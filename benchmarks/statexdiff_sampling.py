"""StateXDiff paper-preset sampling speed: time per DDIM step and cells per minute.

Usage: ``.venv/bin/python benchmarks/statexdiff_sampling.py [--device cpu|cuda] [--batch 64]
[--steps 3] [--precision fp32|bf16] [--vmcs]`` (on CPU use a small batch: one step of the paper
preset at batch 64 costs minutes)

The paper preset's network (arXiv:2605.16104 App. A.4-A.5: 12 blocks, H = 768, 71 tokens, random
weights; speed does not depend on them) samples one batch of ``--batch`` cells (Table 7: 64) with
interaction-aware CFG, the four modes batched into one forward pass of 4 x batch rows per step
(:func:`scpert.methods.statexdiff.sample.sample_residuals`). The condition tokens and Eq. 11 are
computed once per batch, as in prediction. ``--steps`` DDIM steps are timed after one warm-up
batch; cells/min extrapolates to the paper's 50 steps:
``60 * batch / (condition time + 50 * step time)``. CPU: seconds of this process (user + system,
all threads) and wall seconds, cells per CPU minute from the CPU seconds (robust to other load on
the machine); CUDA: wall seconds after synchronising. The paper reports
~2,500 cells/min on one A800 (A.5.4).
"""

from __future__ import annotations

import argparse
import time
from contextlib import nullcontext

import torch

from scpert.generative import DDIMSampler, make_schedule
from scpert.methods.registry import get_spec
from scpert.methods.statexdiff.model import CellInput, StateXDiffNet
from scpert.methods.statexdiff.sample import guidance_rule
from scpert.methods.statexdiff.train import CELL, DRUG_CHANNEL


def build(device: str, vmcs: bool) -> tuple[StateXDiffNet, dict]:
    p = get_spec("statexdiff").resolve("paper")
    cell = ("vmcs", 512) if vmcs else ("raw", 128)
    templates = torch.randn(8, int(p["drug_tokens"]), 512)
    net = StateXDiffNet(p, 128, cell, ("mdt", templates)).to(device).eval()
    return net, p


def run_batch(net, p, batch: int, steps: int, device: str, dtype) -> tuple[float, ...]:
    """Wall seconds of the conditioning and per DDIM step, CPU seconds per step and of the
    conditioning, for one batch."""
    g = torch.Generator().manual_seed(0)
    if net.cell_kind == "raw":
        cell = CellInput(z_c=torch.randn(batch, 128, generator=g).to(device))
    else:
        cell = CellInput(
            shared=torch.randn(batch, net.K_s, 512, generator=g).to(device),
            protein=torch.randn(batch, net.K_p, 512, generator=g).to(device),
        )
    rule = guidance_rule(p)
    modes = rule.modes
    reps = len(modes)
    keep_cell = torch.cat([torch.full((batch,), CELL in m) for m in modes]).to(device)
    keep_drug = torch.cat([torch.full((batch,), DRUG_CHANNEL in m) for m in modes]).to(device)
    rep = CellInput(
        *(
            None if x is None else x.repeat(reps, *[1] * (x.ndim - 1))
            for x in (cell.z_c, cell.shared, cell.protein)
        )
    )
    drug = torch.randint(0, 8, (batch * reps, 1), generator=g).to(device)
    dose = torch.ones(batch * reps, 1, device=device)
    sampler = DDIMSampler(make_schedule("cosine", 1000), 50, 0.0, "v")
    autocast = (
        torch.autocast("cuda", dtype=dtype)
        if device.startswith("cuda") and dtype != torch.float32
        else nullcontext()
    )

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    cpu0 = time.process_time()
    with torch.no_grad(), autocast:
        sync()
        t0 = time.perf_counter()
        cond = net.condition(
            rep,
            drug,
            dose,
            keep_cell,
            keep_drug,
            torch.ones(batch * reps, dtype=torch.bool, device=device),
        )
        sync()
        t1, cpu1 = time.perf_counter(), time.process_time()
        x = torch.randn(batch, 128, generator=g).to(device)

        def model(x_, t_):
            v = net.denoise(x_.repeat(reps, 1), t_.repeat(reps), cond).float()
            return rule.combine(v.reshape(reps, batch, -1))

        for i in range(steps):
            x = sampler.step(model, x, i).x
        sync()
        t2 = time.perf_counter()
    return t1 - t0, (t2 - t1) / steps, (time.process_time() - cpu1) / steps, cpu1 - cpu0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--vmcs", action="store_true", help="VMCS cell tokens (width 512)")
    args = parser.parse_args()
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    net, p = build(args.device, args.vmcs)
    n_params = sum(q.numel() for q in net.parameters())
    run_batch(net, p, args.batch, 1, args.device, dtype)  # warm-up
    cond_s, step_s, step_cpu, cond_cpu = run_batch(
        net, p, args.batch, args.steps, args.device, dtype
    )
    print(
        f"statexdiff paper preset ({n_params / 1e6:.1f} M parameters), device {args.device}, "
        f"{args.precision}, batch {args.batch} x 4 ICFG modes, torch threads "
        f"{torch.get_num_threads()}"
    )
    print(f"condition tokens + Eq. 11: {cond_s * 1e3:.1f} ms wall, {cond_cpu:.2f} CPU s per batch")
    print(
        f"DDIM step (one batched forward of {4 * args.batch} rows): {step_s * 1e3:.1f} ms wall, "
        f"{step_cpu:.2f} CPU s"
    )
    per_batch = cond_s + 50 * step_s
    print(
        f"50 steps: {per_batch:.2f} s wall per batch = {60 * args.batch / per_batch:,.1f} cells/min"
    )
    if args.device == "cpu":
        per_cpu = cond_cpu + 50 * step_cpu
        print(
            f"by CPU seconds: {per_cpu:.1f} CPU s per batch = {60 * args.batch / per_cpu:,.2f} "
            "cells per CPU minute"
        )


if __name__ == "__main__":
    main()
