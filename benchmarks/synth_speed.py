"""Seconds to generate one CT of the generated cohort (plan + render, nothing written).

Usage: .venv/bin/python benchmarks/synth_speed.py [--repeats 3]
Prints one JSON line per (matrix, patient): slices, seconds (median of repeats).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from livermets.datasets.synth import generate_case


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    for matrix in (512, 96):
        for index in (0, 1):  # synth001 is centre A (2.5 mm slices), synth002 centre B (5 mm)
            times, slices = [], 0
            for _ in range(args.repeats):
                tic = time.perf_counter()
                case = generate_case(0, index, "baseline", matrix=matrix)
                times.append(time.perf_counter() - tic)
                slices = case.ct.shape[0]
            print(json.dumps({"matrix": matrix, "patient": f"synth{index + 1:03d}",
                              "slices": slices, "seconds": round(statistics.median(times), 2)}))


if __name__ == "__main__":
    main()
