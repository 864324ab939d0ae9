"""Import CT DICOM series with DICOM Segmentation objects (TCIA style) -> NIfTI + manifest.

SOURCE is a folder (searched recursively) holding CT series and SEG files, e.g. a TCIA
download of Colorectal-Liver-Metastases. Each SEG is matched to the CT series it references
(ReferencedSeriesSequence; when it names none present and the folder holds one CT series,
that one, with a warning). Several SEGs of one CT are merged.

Segments are chosen by their label (SegmentLabel), matched case-insensitively with regular
expressions (searched, not anchored unless the pattern says so):
- lesions: `lesion_pattern` (default `^(tumou?r|lesion|metasta)`: Tumor_1, tumour, Lesion 2,
  Metastasis...). Checked first, so "Tumor in liver" is a lesion. Each segment is split into
  26-connected components, each its own lesion; components under 10 mm3 are dropped.
- liver: `liver_pattern` (default `^liver$`); several matching segments are united.
Other segments (vessels, remnant, ...) are listed in `import.json` and not used. A CT whose
SEGs have no lesion segment gets no lesion mask in the manifest (unknown, not "no lesion").

Patient id: the CT's PatientID (characters outside letters, digits, '.', '_', '-' become '_'),
else the CT folder's name. A patient's CTs are ordered by StudyDate, SeriesDate, SeriesTime:
the first is `baseline`, then `tp1`, `tp2`, ...
Outputs: `OUT/<patient>_<timepoint>/ct.nii.gz`, `liver.nii.gz`, `lesions.nii.gz`,
`OUT/manifest.csv`, `OUT/import.json`.
"""

from __future__ import annotations

import logging
import os
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom

from livermets.datasets.common import (
    MIN_LESION_VOLUME_MM3,
    ImportedCase,
    ImportResult,
    add_lesion_components,
    finish_import,
    import_folder,
    lesion_volumes_ml,
    write_mask,
)
from livermets.errors import InputError
from livermets.io import read_image, write_image
from livermets.io.dicom import SeriesInfo, list_dicom_series
from livermets.io.dicom_seg import Segment, read_dicom_seg
from livermets.io.manifest import ManifestRow
from livermets.io.safe_paths import child_folder, clean_name
from livermets.labels import instance_labels
from livermets.types import PathLike

logger = logging.getLogger(__name__)

DEFAULT_LIVER_PATTERN = r"^liver$"
DEFAULT_LESION_PATTERN = r"^(tumou?r|lesion|metasta)"


@dataclass(frozen=True)
class _CtWithSegs:
    series: SeriesInfo
    segs: tuple[Path, ...]
    patient_id: str
    when: tuple[str, str, str]


def import_dicom_seg(
    source: PathLike,
    out_dir: PathLike,
    *,
    overwrite: bool = False,
    liver_pattern: str = DEFAULT_LIVER_PATTERN,
    lesion_pattern: str = DEFAULT_LESION_PATTERN,
) -> ImportResult:
    """Import every CT series of `source` that has a SEG (see the module docstring)."""
    src = Path(source)
    if not src.is_dir():
        raise InputError(f"{src}: not a folder; give the folder holding the CT series and "
                         "their DICOM-SEG files")
    liver_re, lesion_re = _compile(liver_pattern, "--liver-segment"), _compile(
        lesion_pattern, "--lesion-segment")
    cts = _pair_segs_with_cts(src)
    with import_folder(out_dir, overwrite=overwrite) as out:
        by_patient: dict[str, list[_CtWithSegs]] = defaultdict(list)
        for ct in cts:
            by_patient[ct.patient_id].append(ct)
        cases: list[ImportedCase] = []
        rows: list[ManifestRow] = []
        for patient_id in sorted(by_patient):
            ordered = sorted(by_patient[patient_id], key=lambda c: c.when)
            for index, ct in enumerate(ordered):
                timepoint = "baseline" if index == 0 else f"tp{index}"
                case, row = _import_ct(ct, timepoint, out, liver_re, lesion_re)
                cases.append(case)
                rows.append(row)
        return finish_import("dicom-seg", src, out, cases, rows)


def _compile(pattern: str, option: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        raise InputError(f"{option} {pattern!r} is not a valid regular expression ({exc})") \
            from exc


def _pair_segs_with_cts(src: Path) -> list[_CtWithSegs]:
    series = list_dicom_series(src)
    images = {s.series_instance_uid: s for s in series if s.is_image}
    seg_files = [f for s in series if s.modality == "SEG" for f in s.files]
    if not seg_files:
        raise InputError(f"{src} holds no DICOM-SEG file; give a folder with CT series and "
                         "their segmentations")
    if not images:
        raise InputError(f"{src} holds DICOM-SEG files but no CT image series")
    segs_of: dict[str, list[Path]] = defaultdict(list)
    for seg in seg_files:
        header = pydicom.dcmread(seg, stop_before_pixels=True)
        referenced = [str(item.get("SeriesInstanceUID", "")) for item in
                      header.get("ReferencedSeriesSequence", [])]
        uid = next((u for u in referenced if u in images), None)
        if uid is None and len(images) == 1:
            uid = next(iter(images))
            logger.warning("%s names no CT series in %s; using the only one, %s", seg.name, src,
                           images[uid].display_uid)
        if uid is None:
            raise InputError(f"{seg} refers to series {', '.join(referenced) or '(none)'}, "
                             f"which is not in {src}; add that CT series")
        segs_of[uid].append(seg)
    return [_describe(images[uid], tuple(segs)) for uid, segs in segs_of.items()]


def _describe(series: SeriesInfo, segs: tuple[Path, ...]) -> _CtWithSegs:
    header = pydicom.dcmread(series.slices[0].path, stop_before_pixels=True)
    patient = (clean_name(series.patient_id.strip(), empty="")
               or clean_name(_series_folder(series).name))
    when = tuple(str(header.get(k, "") or "") for k in ("StudyDate", "SeriesDate", "SeriesTime"))
    return _CtWithSegs(series, segs, patient, when)  # type: ignore[arg-type]


def _series_folder(series: SeriesInfo) -> Path:
    return Path(os.path.commonpath([str(p.parent) for p in series.files]))


def _import_ct(ct: _CtWithSegs, timepoint: str, out: Path, liver_re: re.Pattern[str],
               lesion_re: re.Pattern[str]) -> tuple[ImportedCase, ManifestRow]:
    volume = read_image(_series_folder(ct.series), series_uid=ct.series.series_instance_uid)
    folder = child_folder(out, f"{ct.patient_id}_{timepoint}", "case name")
    case = ImportedCase(patient_id=ct.patient_id, timepoint=timepoint)
    case.image = str(write_image(volume, folder / "ct.nii.gz"))
    segments: list[Segment] = [s for seg in ct.segs for s in read_dicom_seg(seg, volume.geometry)]
    liver: np.ndarray | None = None
    union: np.ndarray | None = None
    lesion_labels, ignored = [], []
    for segment in segments:
        if lesion_re.search(segment.label):
            union = add_lesion_components(union, segment.mask.array)
            lesion_labels.append(segment.label)
        elif liver_re.search(segment.label):
            liver = segment.mask.array > 0 if liver is None else liver | (segment.mask.array > 0)
        else:
            ignored.append(segment.label)
    if ignored:
        case.notes.append("segments not used: " + ", ".join(ignored))
    liver_path = lesion_path = None
    if liver is not None:
        liver_path = folder / "liver.nii.gz"
        case.liver_mask = write_mask(volume, liver.astype(np.uint8), liver_path)
    else:
        case.notes.append("no liver segment")
    if union is not None:
        lesions = instance_labels(union, volume.spacing, min_volume_mm3=MIN_LESION_VOLUME_MM3)
        lesion_path = folder / "lesions.nii.gz"
        case.lesion_mask = write_mask(volume, lesions, lesion_path)
        case.lesion_volumes_ml = lesion_volumes_ml(lesions, volume)
        case.lesions = len(case.lesion_volumes_ml)
    else:
        case.notes.append("no lesion segment: lesion mask left empty in the manifest")
    logger.info("%s %s: %d lesion(s) from %s", ct.patient_id, timepoint, case.lesions,
                lesion_labels or "no lesion segment")
    row = ManifestRow(patient_id=ct.patient_id, timepoint=timepoint, image=Path(case.image),
                      liver_mask=liver_path, lesion_mask=lesion_path)
    return case, row
