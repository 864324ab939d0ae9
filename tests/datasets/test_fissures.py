"""Fat inside the generated liver (fissures, hilar fat): the partial-volume share of each voxel,
worked out by hand, and how it is blended into the CT and the liver mask."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from scipy import ndimage

from livermets.datasets.synth import SynthCase, plan_patient, render_case
from livermets.datasets.synth.fissures import (
    LIGAMENT_HU,
    _covered,
    _FatSheet,
    _FatSleeve,
    _PeriportalCuff,
    add_liver_fat,
)
from livermets.datasets.synth.geometry import Pose, _Ellipsoid, _Grid, _rotation, _Tube
from livermets.datasets.synth.protocols import Tissue
from livermets.io.volume import Geometry

LIVER_HU, FAT_HU = 100.0, -95.0


@pytest.mark.parametrize(("half", "distance", "width", "share"), [
    (1.0, 0.0, 1.0, 1.0),  # voxel wholly inside a 2 mm layer
    (1.0, 1.0, 1.0, 0.5),  # voxel [0.5, 1.5] mm, layer [-1, 1] mm: half covered
    (1.25, 1.0, 1.0, 0.75),  # [0.5, 1.5] against [-1.25, 1.25]
    (1.0, 1.5, 1.0, 0.0),  # voxel [1, 2] just outside
    (0.5, 0.0, 2.0, 0.5),  # a 1 mm layer in a 2 mm voxel is never more than half of it
    (0.5, 0.25, 2.0, 0.5),  # ... wherever it lies within the voxel
    (0.5, 1.0, 2.0, 0.25),  # voxel [0, 2]: covers [0, 0.5]
])
def test_covered_share_is_box_overlap(half: float, distance: float, width: float,
                                      share: float) -> None:
    got = _covered(np.float32(half), np.array([distance], np.float32), np.float32(width))
    assert got[0] == pytest.approx(share, abs=1e-6)


def _liver_block() -> tuple[np.ndarray, np.ndarray, _Grid]:
    """A 3 x 21 x 21 grid of 1 mm voxels centred on the patient-frame origin, all liver."""
    geometry = Geometry((3, 21, 21), (1.0, 1.0, 1.0), (-10.0, -10.0, -1.0))
    tissue = np.full(geometry.shape, Tissue.LIVER, np.uint8)
    hu = np.full(geometry.shape, LIVER_HU, np.float32)
    return hu, tissue, _Grid(geometry, Pose(0.0, (0.0, 0.0, 0.0)))


def test_sagittal_sheet_blends_fat_by_hand_worked_shares() -> None:
    hu, tissue, grid = _liver_block()
    tissue[:, 15, 10] = Tissue.LIVER_PORTAL  # a vessel crossing the fissure keeps its HU
    hu[:, 15, 10] = 180.0
    tissue[:, :, 0] = Tissue.MUSCLE  # outside the liver: untouched
    sheet = _FatSheet(_Ellipsoid((0.0, 0.0, 0.0), (4.0, 1e4, 1e4)), thickness_mm=2.5)
    add_liver_fat(hu, tissue, grid, [sheet], FAT_HU, LIVER_HU)
    column = hu[1, 5]  # x = -10 .. 10 mm; the sheet is the plane x = 0, 1.25 mm each side
    assert column[10] == pytest.approx(FAT_HU, abs=0.01)
    for x in (9, 11):  # voxels [0.5, 1.5] mm from the plane: 0.75 fat
        assert column[x] == pytest.approx(LIVER_HU + 0.75 * (FAT_HU - LIVER_HU), abs=0.05)
        assert tissue[1, 5, x] == Tissue.VISCERAL_FAT
    assert np.all(column[:9] == LIVER_HU) and np.all(column[12:] == LIVER_HU)
    assert np.all(tissue[1, 5, 1:9] == Tissue.LIVER) and np.all(tissue[:, :, 0] == Tissue.MUSCLE)
    assert np.all(hu[:, 15, 10] == 180.0) and np.all(tissue[:, 15, 10] == Tissue.LIVER_PORTAL)


def test_oblique_thin_sheet_is_a_grey_streak_left_in_the_liver() -> None:
    hu, tissue, grid = _liver_block()
    # normal tilted 60 degrees out of the axial plane: the 1 mm slice adds 0.87 mm across it
    sheet = _FatSheet(_Ellipsoid((0.0, 0.0, 0.0), (4.0, 1e4, 1e4), _rotation(0.0, 60.0)), 0.8)
    assert sheet.softness_mm(grid.geometry.spacing) == pytest.approx(np.hypot(1.0, 0.866),
                                                                     abs=1e-3)
    add_liver_fat(hu, tissue, grid, [sheet], FAT_HU, LIVER_HU)
    darkest = LIVER_HU + 0.8 / np.hypot(1.0, 0.866) * (FAT_HU - LIVER_HU)  # peak share 0.60
    assert hu.min() == pytest.approx(darkest, abs=0.5)
    assert hu.min() > -30.0  # never reads as fat ...
    assert (hu < LIVER_HU - 40.0).sum() >= 21 * 3  # ... but a dark line on every row and slice


def test_ligamentum_teres_is_soft_tissue_inside_its_fat() -> None:
    hu, tissue, grid = _liver_block()
    along_y = _Tube((0.0, -20.0, 0.0), (0.0, 20.0, 0.0), radius=4.0)
    add_liver_fat(hu, tissue, grid, [_FatSleeve(along_y, cord_mm=1.5)], FAT_HU,
                  LIVER_HU)
    row = hu[1, 10]  # across the cord at z = 0
    assert row[10] == pytest.approx(LIGAMENT_HU, abs=0.01)  # centre: all ligament
    assert tissue[1, 10, 10] == Tissue.MUSCLE
    assert row[7] == pytest.approx(FAT_HU, abs=0.01) and row[13] == pytest.approx(FAT_HU,
                                                                                    abs=0.01)
    assert tissue[1, 10, 7] == Tissue.VISCERAL_FAT
    assert row[4] == LIVER_HU  # 6 mm from the axis, beyond 4 mm of fat and the voxel


def test_periportal_cuff_darkens_parenchyma_round_the_vessel_and_stays_liver() -> None:
    hu, tissue, grid = _liver_block()
    tissue[:, :, 10] = Tissue.LIVER_PORTAL  # the vessel: the column x = 0 mm on every row
    hu[:, :, 10] = 180.0
    along_y = _Tube((0.0, -20.0, 0.0), (0.0, 20.0, 0.0), radius=3.0)
    add_liver_fat(hu, tissue, grid, [_PeriportalCuff(along_y, darker_hu=40.0)], FAT_HU,
                  LIVER_HU)
    row = hu[1, 10]  # z = 0; the voxel's width across the cuff is hypot(1, 0.5) = 1.118 mm
    assert row[10] == 180.0  # the vessel keeps its HU
    for x in (8, 12):  # 2 mm from the axis: [1.44, 2.56] mm, all cuff
        assert row[x] == pytest.approx(LIVER_HU - 40.0, abs=0.01)
    for x in (7, 13):  # 3 mm: [2.44, 3.56] mm against 3 mm, half cuff
        assert row[x] == pytest.approx(LIVER_HU - 20.0, abs=0.01)
    assert row[6] == LIVER_HU and row[14] == LIVER_HU  # 4 mm: [3.44, 4.56], none
    assert np.all(tissue[tissue != Tissue.LIVER_PORTAL] == Tissue.LIVER)  # all still liver


def test_generated_cuffs_follow_the_large_portal_branches() -> None:
    plan = plan_patient(0, 1, matrix=160, slices=40)
    cuffs = [fat for fat in plan.anatomy.liver_fat if isinstance(fat, _PeriportalCuff)]
    portal = [tube for tube, kind in plan.anatomy.vessels
              if kind == Tissue.LIVER_PORTAL and tube.radius >= 3.0]
    assert len(cuffs) == len(portal) > 0
    for cuff, tube in zip(cuffs, portal, strict=True):
        assert (cuff.tube.a, cuff.tube.b) == (tube.a, tube.b)
        assert tube.radius + 0.9 <= cuff.tube.radius <= tube.radius + 4.5
        assert 25.0 <= cuff.darker_hu <= 60.0


def _fat_in_outline(case: SynthCase) -> tuple[float, int]:
    """Share of liver-mask voxels below -30 HU, and the count of voxels below -30 HU inside
    the liver's outline (its 7x7-pixel closing per slice) but out of its mask."""
    ct, liver = case.ct.array, case.liver.array.astype(bool)
    closed = np.stack([ndimage.binary_closing(plane, np.ones((7, 7))) for plane in liver])
    return float(np.mean(ct[liver] < -30)), int((closed & ~liver & (ct < -30)).sum())


def test_generated_liver_mask_leaves_out_its_fat() -> None:
    plan = plan_patient(0, 1, matrix=160, slices=40)
    assert any(isinstance(fat, _FatSheet) for fat in plan.anatomy.liver_fat)
    with_fat = _fat_in_outline(render_case(plan))
    without = _fat_in_outline(render_case(replace(plan, anatomy=replace(plan.anatomy,
                                                                        liver_fat=()))))
    # noise and the through-slice blend at the liver's surface aside (0.12% of the mask
    # below -30 HU either way), no fat is called liver
    assert with_fat[0] < without[0] + 0.0002
    assert with_fat[1] > without[1] + 200  # clefts of fat reach into the outline (~520 vs 120)
