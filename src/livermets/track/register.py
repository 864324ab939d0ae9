"""Align a follow-up CT to its baseline by the liver: rigid, then affine (SimpleITK).

Driven by the two liver masks, not the intensities (contrast and lesions change with therapy;
the liver's shape changes far less): each mask becomes a signed distance map in mm, clipped to
+/- `DISTANCE_CLIP_MM`, and the follow-up's map is aligned to the baseline's by mean squares,
first with a rigid (Euler) transform started from the masks' centres of mass, then with an
affine one, each at 1/4 and 1/2 resolution; optionally (`deformable`) a B-spline step with
control points every 50 mm refines the affine one, for livers whose shape changed (resection,
large lesions growing or shrinking).

The transform maps baseline physical points (LPS mm) to follow-up points (ITK's fixed-to-moving
convention), so `resample_labels` brings follow-up label maps onto the baseline grid. The
quality is the liver Dice after alignment; under `MIN_LIVER_DICE` the registration is refused
(`InputError`), never silently used.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from livermets.errors import InputError
from livermets.io.volume import Volume

logger = logging.getLogger(__name__)

DISTANCE_CLIP_MM = 30.0
MIN_LIVER_DICE = 0.8
#: Control-point spacing of the optional B-spline step (mm): smooth, liver-scale deformation.
BSPLINE_SPACING_MM = 50.0
#: The B-spline step works within this distance of the baseline liver (mm).
BSPLINE_MARGIN_MM = 20.0


@dataclass(frozen=True)
class Registration:
    """The transform (baseline -> follow-up points) and the liver Dice before and after."""

    transform: sitk.Transform
    liver_dice_before: float
    liver_dice_after: float


def _distance_map(mask: Volume) -> sitk.Image:
    image = mask.with_array((mask.array > 0).astype(np.uint8)).to_sitk()
    distance = sitk.SignedMaurerDistanceMap(image, insideIsPositive=False,
                                            squaredDistance=False, useImageSpacing=True)
    return sitk.Clamp(sitk.Cast(distance, sitk.sitkFloat32), sitk.sitkFloat32,
                      -DISTANCE_CLIP_MM, DISTANCE_CLIP_MM)


def _method(seed: int) -> sitk.ImageRegistrationMethod:
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMeanSquares()
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(0.1, seed)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(learningRate=2.0, minStep=1e-4,
                                                     numberOfIterations=100,
                                                     relaxationFactor=0.5)
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel([4, 2])
    method.SetSmoothingSigmasPerLevel([2.0, 1.0])
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    return method


def register_livers(baseline_liver: Volume, followup_liver: Volume, *, seed: int = 0,
                    min_liver_dice: float = MIN_LIVER_DICE,
                    deformable: bool = False) -> Registration:
    """Rigid then affine alignment of `followup_liver` onto `baseline_liver` (module rule);
    with `deformable`, a B-spline step after the affine one (`_deformable`)."""
    for name, mask in (("baseline", baseline_liver), ("follow-up", followup_liver)):
        if not (mask.array > 0).any():
            raise InputError(f"the {name} liver mask is empty; registration needs both livers")
    fixed, moving = _distance_map(baseline_liver), _distance_map(followup_liver)
    fixed_mask = baseline_liver.with_array((baseline_liver.array > 0).astype(np.uint8)).to_sitk()
    moving_mask = followup_liver.with_array(
        (followup_liver.array > 0).astype(np.uint8)).to_sitk()
    before = liver_dice(baseline_liver, followup_liver, sitk.Transform(3, sitk.sitkIdentity))
    initial = sitk.CenteredTransformInitializer(
        fixed_mask, moving_mask, sitk.Euler3DTransform(),
        sitk.CenteredTransformInitializerFilter.MOMENTS)
    rigid_method = _method(seed)
    rigid_method.SetInitialTransform(initial, inPlace=False)
    rigid = rigid_method.Execute(fixed, moving)
    affine = sitk.AffineTransform(3)
    affine.SetCenter(initial.GetCenter())
    affine_method = _method(seed + 1)
    affine_method.SetMovingInitialTransform(rigid)
    affine_method.SetInitialTransform(affine, inPlace=False)
    affine_result = affine_method.Execute(fixed, moving)
    transform: sitk.Transform = as_affine(sitk.CompositeTransform([rigid, affine_result]))
    if deformable:
        transform = _deformable(fixed, moving, transform, seed + 2)
    after = liver_dice(baseline_liver, followup_liver, transform)
    logger.info("liver Dice %.3f before, %.3f after alignment", before, after)
    if after < min_liver_dice:
        raise InputError(f"registration failed: the livers overlap with Dice {after:.2f} after "
                         f"alignment (< {min_liver_dice}); check both liver masks")
    return Registration(transform, round(before, 4), round(after, 4))


def _deformable(fixed: sitk.Image, moving: sitk.Image, affine: sitk.AffineTransform,
                seed: int) -> sitk.CompositeTransform:
    """A B-spline refinement (control points about every `BSPLINE_SPACING_MM`) of `affine`
    between the distance maps around the baseline liver, by L-BFGS-B at 1/4 and 1/2
    resolution. The result maps
    baseline points p to affine(bspline(p)), and writes to a .tfm file as one transform."""
    fixed = _around_liver(fixed)
    size_mm = [n * s for n, s in zip(fixed.GetSize(), fixed.GetSpacing(), strict=True)]
    mesh = [max(1, round(mm / BSPLINE_SPACING_MM)) for mm in size_mm]
    bspline = sitk.BSplineTransformInitializer(fixed, mesh, order=3)
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMeanSquares()
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(0.1, seed)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsLBFGSB(gradientConvergenceTolerance=1e-5, numberOfIterations=30,
                                maximumNumberOfCorrections=5,
                                maximumNumberOfFunctionEvaluations=500)
    method.SetShrinkFactorsPerLevel([4, 2])
    method.SetSmoothingSigmasPerLevel([2.0, 1.0])
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    method.SetMovingInitialTransform(affine)
    method.SetInitialTransform(bspline, inPlace=True)
    method.Execute(fixed, moving)
    return sitk.CompositeTransform([affine, bspline])


def _around_liver(distance: sitk.Image) -> sitk.Image:
    """The part of a liver's distance map within `BSPLINE_MARGIN_MM` of the liver: the B-spline
    grid spans only that box (the CT around it would only cost time)."""
    array = sitk.GetArrayViewFromImage(distance)  # (z, y, x); negative inside the liver
    near = np.argwhere(array <= 0.0)
    if near.size == 0:
        return distance
    spacing = np.asarray(distance.GetSpacing())[::-1]
    pad = np.ceil(BSPLINE_MARGIN_MM / spacing).astype(int)
    low = np.maximum(near.min(axis=0) - pad, 0)
    high = np.minimum(near.max(axis=0) + pad + 1, array.shape)
    return distance[int(low[2]):int(high[2]), int(low[1]):int(high[1]), int(low[0]):int(high[0])]


def as_affine(transform: sitk.Transform) -> sitk.AffineTransform:
    """One AffineTransform equal to an affine `transform` (e.g. rigid then affine composed),
    read off from the images of the origin and the unit vectors; it can be written to .tfm."""
    origin = np.array(transform.TransformPoint((0.0, 0.0, 0.0)))
    columns = [np.array(transform.TransformPoint(tuple(float(v) for v in unit))) - origin
               for unit in np.eye(3)]
    affine = sitk.AffineTransform(3)
    affine.SetMatrix(tuple(float(v) for v in np.stack(columns, axis=1).ravel()))
    affine.SetTranslation(tuple(float(v) for v in origin))
    return affine


def resample_labels(labels: Volume, reference: Volume, transform: sitk.Transform) -> Volume:
    """Follow-up `labels` on `reference`'s grid (nearest neighbour), through `transform`."""
    resampled = sitk.Resample(labels.to_sitk(), reference.to_sitk(), transform,
                              sitk.sitkNearestNeighbor, 0.0, labels.to_sitk().GetPixelID())
    return reference.with_array(sitk.GetArrayFromImage(resampled))


def liver_dice(baseline_liver: Volume, followup_liver: Volume,
               transform: sitk.Transform) -> float:
    """Dice of the baseline liver and the follow-up liver brought onto its grid."""
    moved = resample_labels(followup_liver.with_array(
        (followup_liver.array > 0).astype(np.uint8)), baseline_liver, transform).array > 0
    fixed = baseline_liver.array > 0
    total = int(fixed.sum() + moved.sum())
    return 2 * int(np.count_nonzero(fixed & moved)) / total if total else 0.0
