"""Forward-pass speed of the paper's U-Net at 256 x 256 on the CPU: memory layout and batch size.

Prints one JSON line per (layout, batch): milliseconds per slice (inference mode, fp32) and the
peak resident memory of this process so far. Run it once as is and once with tcmalloc
preloaded to compare allocators:

    .venv/bin/python benchmarks/infer_forward.py
    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 \\
        .venv/bin/python benchmarks/infer_forward.py
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import torch

from livermets.config import allocator
from livermets.models import create_model


def ms_per_slice(model: torch.nn.Module, batch: int, channels_last: bool, slices: int) -> float:
    """Mean milliseconds per slice over at least `slices` slices, after one warm-up batch."""
    layout = torch.channels_last if channels_last else torch.contiguous_format
    net = model.to(memory_format=layout)  # type: ignore[call-overload]
    images = torch.randn(batch, 1, 256, 256).contiguous(memory_format=layout)
    with torch.inference_mode():
        net(images)
        done, tic = 0, time.perf_counter()
        while done < slices:
            net(images)
            done += batch
    return (time.perf_counter() - tic) / done * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--slices", type=int, default=32)
    parser.add_argument("--batches", type=int, nargs="+", default=[4, 8, 16])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = create_model("unet").eval()
    for channels_last in (False, True):
        for batch in args.batches:
            ms = ms_per_slice(model, batch, channels_last, args.slices)
            print(json.dumps({
                "allocator": allocator(), "layout": "channels_last" if channels_last
                else "contiguous", "batch": batch, "ms_per_slice": round(ms, 1),
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
            }), flush=True)


if __name__ == "__main__":
    main()
