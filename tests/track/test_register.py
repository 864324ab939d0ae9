"""The liver registration's optional B-spline step, on livers whose shape changed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from livermets.io import Volume
from livermets.track.register import register_livers

SPACING = (2.5, 1.5, 1.5)


def _ellipsoid(shape: tuple[int, int, int], centre_mm: tuple[float, float, float],
               semi_mm: tuple[float, float, float]) -> np.ndarray:
    z, y, x = (np.arange(n) * s for n, s in zip(shape, SPACING, strict=True))
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij")
    return (((zz - centre_mm[0]) / semi_mm[0]) ** 2 + ((yy - centre_mm[1]) / semi_mm[1]) ** 2
            + ((xx - centre_mm[2]) / semi_mm[2]) ** 2) <= 1.0


def test_deformable_step_follows_a_local_change_of_shape(tmp_path: Path) -> None:
    # Baseline: an ellipsoid liver. Follow-up: shifted by 6 mm, with a lobe that grew (a
    # 30 mm bulge on one side) - a change no affine transform can undo.
    shape = (48, 120, 140)
    base = _ellipsoid(shape, (60, 90, 105), (40, 50, 75))
    follow = _ellipsoid(shape, (60, 96, 105), (40, 50, 75))
    follow |= _ellipsoid(shape, (60, 96, 175), (25, 30, 32))
    base_liver = Volume.from_array(base.astype(np.uint8), spacing=SPACING)
    follow_liver = Volume.from_array(follow.astype(np.uint8), spacing=SPACING)
    affine = register_livers(base_liver, follow_liver)
    deformable = register_livers(base_liver, follow_liver, deformable=True)
    assert deformable.liver_dice_after > affine.liver_dice_after + 0.01
    assert deformable.liver_dice_after > 0.97
    # The transform writes to and reads back from a .tfm file, mapping points the same way.
    path = tmp_path / "transform.tfm"
    sitk.WriteTransform(deformable.transform, str(path))
    again = sitk.ReadTransform(str(path))
    point = (100.0, 80.0, 60.0)
    assert np.allclose(again.TransformPoint(point), deformable.transform.TransformPoint(point),
                       atol=1e-4)
