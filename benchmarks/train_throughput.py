"""Training throughput (slices/s) of both networks, fp32 vs channels_last + bf16, on this machine.

Prints one JSON line per configuration with: forward FLOPs per slice, training FLOPs per slice
(3x forward: forward + backward for activations and weights), slices per second, achieved
GFLOP/s, the machine's measured matmul ceiling for that precision and the fraction reached, and
the peak resident memory (MB) of that configuration, each run in its own child process.

Usage: .venv/bin/python benchmarks/train_throughput.py [--size 256] [--batch 8] [--steps 6]
       [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import time

import torch

from livermets.models import create_model
from livermets.models.flops import forward_flops
from livermets.train.losses import bce


def matmul_gflops(dtype: torch.dtype, size: int = 2048, repeats: int = 8) -> float:
    """Measured dense matmul rate (GFLOP/s) for square `size` matrices of `dtype`."""
    a = torch.randn(size, size, dtype=dtype)
    b = torch.randn(size, size, dtype=dtype)
    for _ in range(2):
        a @ b
    tic = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - tic) / 1e9


def train_rate(arch: str, size: int, batch: int, steps: int, bf16: bool) -> float:
    """Slices per second of forward + backward + Adam step."""
    torch.manual_seed(0)
    model = create_model(arch)
    if bf16:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    images = torch.randn(batch, 1, size, size)
    if bf16:
        images = images.contiguous(memory_format=torch.channels_last)
    targets = (torch.rand(batch, 1, size, size) > 0.9).float()

    def step() -> None:
        context = torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)
        with context:
            logits = model(images)
        loss = bce(logits.float(), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(2):
        step()
    tic = time.perf_counter()
    for _ in range(steps):
        step()
    return batch * steps / (time.perf_counter() - tic)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ceilings = {"fp32": matmul_gflops(torch.float32), "bf16": matmul_gflops(torch.bfloat16)}
    print(json.dumps({"matmul_ceiling_gflops": {k: round(v, 1) for k, v in ceilings.items()},
                      "threads": args.threads, "torch": torch.__version__}), flush=True)
    context = multiprocessing.get_context("spawn")
    for arch in ("unet", "resnet18-unet"):
        for precision in ("fp32", "bf16"):
            with context.Pool(1) as pool:
                line = pool.apply(measure, (arch, precision, args, ceilings[precision]))
            print(json.dumps(line), flush=True)


def measure(arch: str, precision: str, args: argparse.Namespace, ceiling: float
            ) -> dict[str, object]:
    """One configuration, in a fresh process so that its peak memory is its own."""
    torch.set_num_threads(args.threads)
    forward = forward_flops(create_model(arch), args.size)
    rate = train_rate(arch, args.size, args.batch, args.steps, precision == "bf16")
    achieved = rate * 3 * forward / 1e9
    return {
        "arch": arch, "size": args.size, "batch": args.batch,
        "precision": "fp32" if precision == "fp32" else "channels_last+bf16",
        "forward_gflop_per_slice": round(forward / 1e9, 2),
        "slices_per_s": round(rate, 2), "achieved_gflops": round(achieved, 1),
        "fraction_of_ceiling": round(achieved / ceiling, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


if __name__ == "__main__":
    main()
