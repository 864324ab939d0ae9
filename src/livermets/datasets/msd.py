"""Import the Medical Segmentation Decathlon (Task03_Liver) or LiTS layout into a manifest.

MSD: `SOURCE/imagesTr/*.nii.gz` with `SOURCE/labelsTr/<same name>` (and optionally
`SOURCE/imagesTs/*.nii.gz`, unlabelled). LiTS: `SOURCE/volume-N.nii[.gz]` with
`SOURCE/segmentation-N.nii[.gz]`. Labels: 0 background, 1 liver, 2 tumour.

The CTs are not copied: the manifest points at them. Per labelled CT two masks are written to
`OUT/<case>/`: `liver.nii.gz` (labels 1 and 2: the liver with its tumours) and
`lesions.nii.gz` (label 2 split into 26-connected lesions, numbered by decreasing volume,
components under 10 mm3 dropped). macOS `._*` files are ignored.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from livermets.datasets.common import (
    MIN_LESION_VOLUME_MM3,
    ImportedCase,
    ImportResult,
    finish_import,
    import_folder,
    lesion_volumes_ml,
    write_mask,
)
from livermets.errors import InputError
from livermets.io import read_geometry, read_image
from livermets.io.atomic import stem_without_suffix
from livermets.io.manifest import ManifestRow
from livermets.io.safe_paths import child_folder, clean_name
from livermets.labels import instance_labels
from livermets.types import PathLike

logger = logging.getLogger(__name__)

LIVER_LABELS = (1, 2)
TUMOUR_LABEL = 2
_NIFTI = re.compile(r"\.nii(\.gz)?$")


def _nifti_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir()
                  if _NIFTI.search(p.name) and not p.name.startswith("._"))


def find_msd_pairs(source: Path) -> list[tuple[str, Path, Path | None]]:
    """(case name, image, label or None) for every CT of an MSD or LiTS folder."""
    pairs: list[tuple[str, Path, Path | None]] = []
    labels = {stem_without_suffix(p): p for p in _nifti_files(source / "labelsTr")}
    for image in _nifti_files(source / "imagesTr"):
        name = stem_without_suffix(image)
        if name not in labels:
            raise InputError(f"{image} has no label file labelsTr/{image.name}; add it or move "
                             "the image to imagesTs/")
        pairs.append((name, image, labels[name]))
    pairs += [(stem_without_suffix(p), p, None) for p in _nifti_files(source / "imagesTs")]
    segmentations = {stem_without_suffix(p).replace("segmentation-", ""): p
                     for p in _nifti_files(source) if p.name.startswith("segmentation-")}
    for image in _nifti_files(source):
        if image.name.startswith("volume-"):
            number = stem_without_suffix(image).replace("volume-", "")
            pairs.append((f"lits-{number}", image, segmentations.get(number)))
    return pairs


def import_msd(source: PathLike, out_dir: PathLike, *, overwrite: bool = False) -> ImportResult:
    """Import an MSD/LiTS folder: masks written to `out_dir`, CTs referenced in place."""
    src = Path(source)
    if not src.is_dir():
        raise InputError(f"{src}: not a folder; give the MSD task folder (with imagesTr/, "
                         "labelsTr/) or a LiTS folder (volume-N.nii, segmentation-N.nii)")
    pairs = find_msd_pairs(src)
    if not pairs:
        raise InputError(f"{src} has no imagesTr/*.nii.gz nor volume-*.nii files; give the MSD "
                         "task folder or a LiTS folder")
    with import_folder(out_dir, overwrite=overwrite) as out:
        cases: list[ImportedCase] = []
        rows: list[ManifestRow] = []
        for raw_name, image, label in pairs:
            name = clean_name(raw_name)
            case = ImportedCase(patient_id=name, image=str(image))
            liver_path = lesion_path = None
            if label is not None:
                liver_path, lesion_path = _write_masks(name, image, label, out, case)
            else:
                case.notes.append("no label file: row without masks")
            cases.append(case)
            rows.append(ManifestRow(patient_id=name, timepoint="baseline", image=image.resolve(),
                                    center="", liver_mask=liver_path, lesion_mask=lesion_path))
        return finish_import("msd", src, out, cases, rows)


def _write_masks(name: str, image: Path, label: Path, out: Path,
                 case: ImportedCase) -> tuple[Path, Path]:
    labels = read_image(label)
    difference = read_geometry(image).difference(labels.geometry)
    if difference is not None:
        raise InputError(f"{label} is not on the grid of {image.name} ({difference}); fix the "
                         "data set")
    values = labels.array
    unexpected = sorted(set(np.unique(values).tolist()) - {0, *LIVER_LABELS})
    if unexpected:
        raise InputError(f"{label} has label value(s) {unexpected}; expected 0 background, "
                         "1 liver, 2 tumour")
    liver = np.isin(values, LIVER_LABELS).astype(np.uint8)
    lesions = instance_labels(values == TUMOUR_LABEL, labels.spacing,
                              min_volume_mm3=MIN_LESION_VOLUME_MM3)
    folder = child_folder(out, name, "case name")
    liver_path, lesion_path = folder / "liver.nii.gz", folder / "lesions.nii.gz"
    case.liver_mask = write_mask(labels, liver, liver_path)
    case.lesion_mask = write_mask(labels, lesions, lesion_path)
    case.lesion_volumes_ml = lesion_volumes_ml(lesions, labels)
    case.lesions = len(case.lesion_volumes_ml)
    return liver_path, lesion_path
