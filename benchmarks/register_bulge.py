"""The deformable registration step where a liver changed shape: affine vs B-spline liver Dice.

The case of `tests/track/test_register.py`: an ellipsoid liver, and at follow-up the same liver
shifted by 6 mm with a 30 mm bulge on one side, which no affine transform can undo.

Usage: PYTHONPATH=. .venv/bin/python benchmarks/register_bulge.py
"""

from __future__ import annotations

import json
import time

import numpy as np
from tests.track.test_register import SPACING, _ellipsoid

from livermets.io import Volume
from livermets.track.register import register_livers


def main() -> None:
    shape = (48, 120, 140)
    base = _ellipsoid(shape, (60, 90, 105), (40, 50, 75))
    follow = (_ellipsoid(shape, (60, 96, 105), (40, 50, 75))
              | _ellipsoid(shape, (60, 96, 175), (25, 30, 32)))
    baseline, followup = (Volume.from_array(a.astype(np.uint8), spacing=SPACING)
                          for a in (base, follow))
    for deformable in (False, True):
        tic = time.perf_counter()
        result = register_livers(baseline, followup, deformable=deformable)
        print(json.dumps({"deformable": deformable, "liver_dice_before": result.liver_dice_before,
                          "liver_dice_after": result.liver_dice_after,
                          "seconds": round(time.perf_counter() - tic, 1)}))


if __name__ == "__main__":
    main()
