"""Real labelled livers from two small public data sets, made ready for a manifest.

- The CRLM-CT-1100 atlas (TCIA Colorectal-Liver-Metastases, CC BY 4.0): a CT re-sampled to
  2.35 mm isotropic and cropped around the liver, HU clipped to [-500, 1500] in 8-bit steps.
  Its label map is documented as bit-coded (1 body, 2 metastasis, 4 liver), but the value 4
  never occurs: the liver parenchyma is 1 and the metastasis 2 (checked by their HU and
  shape), so the liver with its metastasis is labels 1 and 2, the metastasis label 2.
- The TotalSegmentator example (CC BY 4.0): a 3 mm CT of 112 slices whose multi-organ label
  map (label 5 = liver) holds only 30 slices. Its header puts them at the CT's slices 0-29,
  but they belong to slices 82-111: there the liver's HU spread is 15 HU, against 31 HU one
  slice off and over 60 HU further away. `totalsegmentator_example` writes the CT's slices
  82-111 with the liver mask on that exact grid.

Both write int16 CT + uint8 masks as NIfTI under `out` and return a `ManifestRow`.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from livermets.datasets.common import MIN_LESION_VOLUME_MM3
from livermets.errors import InputError
from livermets.io import Volume, read_image, write_image
from livermets.io.manifest import ManifestRow
from livermets.labels import instance_labels

#: The TotalSegmentator example's label slices 0-29 lie on these CT slices (see the docstring).
TOTALSEG_LABEL_SLICES = slice(82, 112)
TOTALSEG_LIVER_LABEL = 5


def _int16(volume: Volume) -> Volume:
    return volume.with_array(np.rint(volume.array).astype(np.int16))


def crlm_atlas(ct_path: Path, seg_path: Path, out: Path, *, split: str = "training"
               ) -> ManifestRow:
    """The CRLM-CT-1100 atlas as an int16 CT, a liver mask (labels 1 and 2) and a lesion mask
    (label 2, 26-connected lesions of at least 10 mm3, numbered by decreasing volume)."""
    return _labelled_ct(ct_path, seg_path, out, ManifestRow(
        patient_id="crlm1100", timepoint="baseline", image=Path(), center="CRLM", split=split))


def lits_crop(ct_path: Path, seg_path: Path, out: Path, *, split: str = "validation"
              ) -> ManifestRow:
    """LiTS volume 117 as shipped in ../shared/data/lits (a 128^3 crop around the liver, HU):
    its liver mask (labels 1 and 2) and lesion mask (label 2, 26-connected lesions of at least
    10 mm3 by the file's spacing, numbered by decreasing volume). The file's 1.0 mm spacing is
    not the true one (about 1.2-1.5 mm): use it for Dice and detection, not for sizes in mm."""
    return _labelled_ct(ct_path, seg_path, out, ManifestRow(
        patient_id="lits117", timepoint="baseline", image=Path(), center="LiTS", split=split))


def _labelled_ct(ct_path: Path, seg_path: Path, out: Path, row: ManifestRow) -> ManifestRow:
    """A CT with a label map of 1 liver and 2 tumour written as `out`/ct.nii.gz (int16),
    liver.nii.gz (labels 1 and 2) and lesions.nii.gz (label 2's lesions of at least 10 mm3);
    `row` with those paths."""
    ct = read_image(ct_path)
    seg = read_image(seg_path)
    if ct.geometry.difference(seg.geometry) is not None:
        raise InputError(f"{seg_path}: the label map is not on the CT's grid")
    out.mkdir(parents=True, exist_ok=True)
    image = write_image(_int16(ct), out / "ct.nii.gz")
    liver = write_image(seg.with_array(np.isin(seg.array, (1, 2)).astype(np.uint8)),
                        out / "liver.nii.gz")
    lesions = instance_labels(seg.array == 2, seg.spacing, min_volume_mm3=MIN_LESION_VOLUME_MM3)
    dtype = np.uint8 if lesions.max() < 256 else np.uint16
    lesion = write_image(seg.with_array(lesions.astype(dtype)), out / "lesions.nii.gz")
    return replace(row, image=image, liver_mask=liver, lesion_mask=lesion)


def totalsegmentator_example(ct_path: Path, seg_path: Path, out: Path, *,
                             split: str = "training") -> ManifestRow:
    """The TotalSegmentator example's labelled slices (CT 82-111) with its liver (label 5)."""
    ct = read_image(ct_path)
    seg = read_image(seg_path)
    part = TOTALSEG_LABEL_SLICES
    if ct.shape[0] != part.stop or seg.shape != (part.stop - part.start, *ct.shape[1:]):
        raise InputError(f"{seg_path}: expected the TotalSegmentator example (CT of "
                         f"{part.stop} slices, labels on {part.stop - part.start}); got CT "
                         f"{ct.shape} and labels {seg.shape}")
    x, y, z = (float(v) for v in ct.geometry.index_to_physical((part.start, 0, 0)))
    cropped = Volume.from_array(np.rint(ct.array[part]).astype(np.int16), spacing=ct.spacing,
                                origin=(x, y, z),
                                direction=ct.direction)
    out.mkdir(parents=True, exist_ok=True)
    image = write_image(cropped, out / "ct.nii.gz")
    liver = write_image(cropped.with_array((seg.array == TOTALSEG_LIVER_LABEL).astype(np.uint8)),
                        out / "liver.nii.gz")
    return ManifestRow(patient_id="totalseg", timepoint="baseline", image=image,
                       center="TotalSeg", liver_mask=liver, split=split)
