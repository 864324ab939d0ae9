"""Read a CT series from a folder of DICOM files into a `Volume` (HU) with its exact geometry.

Headers are read with pydicom (no pixel data) to find the series, sort the slices and check
them; pixel data are decoded by SimpleITK (GDCM), which handles compressed transfer syntaxes
(JPEG, JPEG 2000, RLE) and applies RescaleSlope/RescaleIntercept. The geometry is then set
from the headers, never taken from the decoder.

Geometry, in the conventions of `livermets.io.volume`:

- slices are sorted by their position along the slice normal (row cosine x column cosine of
  ImageOrientationPatient), never by file name or InstanceNumber;
- origin: ImagePositionPatient of the first sorted slice (LPS mm);
- spacing (z, y, x) mm: z is the distance between consecutive positions along the normal
  (not SliceThickness), y the row spacing (PixelSpacing[0]), x the column spacing
  (PixelSpacing[1]);
- direction: columns [row cosine, column cosine, normal].

Tolerances (a series outside them is refused with an `InputError` naming the problem):

- orientation: every ImageOrientationPatient component within 1e-4 of the first slice's;
- pixel spacing: within 1e-3 mm of the first slice's; rows and columns identical;
- duplicate positions: two slices closer than 0.01 mm along the normal;
- gantry tilt: a slice more than 10% of the smallest pixel spacing away (in plane) from the
  line through the first slice along the normal; the message gives the tilt angle fitted
  over all slices;
- missing slices: a gap >= 1.5x the median gap;
- uniform spacing: every gap within 1% of the median gap; the z spacing is then the mean gap.
  Gaps deviating more than 1% (but below the missing-slice threshold) are resampled linearly
  along the normal onto round(extent / median) + 1 slices at the median gap, starting at the
  first slice (the last target slice may overshoot the stack by under half a gap: it takes
  the last slice's values); a WARNING is logged and metadata `resampled_z` is "true".

Metadata of the returned volume: `format` ("dicom"), `source` (the folder), `modality`,
`study_instance_uid`, `series_instance_uid`, `series_description`, `patient_id` and
`patient_name` (when present), `resampled_z` (only when resampled) and, for writing a DICOM
Segmentation that references the CT without reading the headers again:

- `sop_instance_uids`: a JSON list of the SOPInstanceUIDs of the sorted source slices (index k
  is slice k unless `resampled_z`); `referenced_sop_instance_uids` parses it;
- `dicom_slices`: per sorted source slice, its file as the series scan read it (path, size in
  bytes and modification time in ns, taken just before its header was read), SOPClassUID,
  SOPInstanceUID, FrameOfReferenceUID and ImagePositionPatient as written in the file (JSON);
  `source_slices` parses it and `SourceSlice.changed` tells whether a file changed since;
- `dicom_geometry`: the grid the headers gave (`Geometry.to_json`); `geometry_as_read` parses it.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections import Counter
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pydicom
import SimpleITK as sitk
from pydicom.errors import InvalidDicomError

from livermets.errors import InputError
from livermets.io.volume import Geometry, Volume
from livermets.types import Direction, PathLike

logger = logging.getLogger(__name__)

#: Display name of the group of files without a SeriesInstanceUID (their key is "").
NO_SERIES_UID = "(no SeriesInstanceUID)"
ORIENTATION_TOLERANCE = 1e-4
PIXEL_SPACING_TOLERANCE_MM = 1e-3
DUPLICATE_TOLERANCE_MM = 0.01
TILT_TOLERANCE_PIXELS = 0.1
MISSING_SLICE_RATIO = 1.5
UNIFORM_TOLERANCE = 0.01

_DIRECTORY_SOP_CLASS = "1.2.840.10008.1.3.10"  # Media Storage Directory (DICOMDIR)
_HEADER_TAGS = [
    "SOPClassUID",
    "FrameOfReferenceUID",
    "SOPInstanceUID",
    "Modality",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SeriesDescription",
    "PatientID",
    "PatientName",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "PixelSpacing",
    "Rows",
    "Columns",
]


@dataclass(frozen=True)
class SliceHeader:
    """What one image file's header says about its slice.

    `position`: ImagePositionPatient, LPS mm (x, y, z) of the centre of the first pixel;
    `orientation`: ImageOrientationPatient (row cosine, then column cosine);
    `pixel_spacing`: (row spacing = y, column spacing = x) mm, None when the header lacks it.
    `position_text`: ImagePositionPatient as written in the file (DS strings); `file_stamp`:
    the file's (size in bytes, modification time in ns) just before its header was read.
    """

    path: Path
    sop_instance_uid: str
    position: tuple[float, float, float]
    orientation: tuple[float, float, float, float, float, float]
    rows: int
    columns: int
    pixel_spacing: tuple[float, float] | None
    sop_class_uid: str
    frame_of_reference_uid: str
    position_text: tuple[str, str, str]
    file_stamp: tuple[int, int]


@dataclass(frozen=True)
class SourceSlice:
    """One source slice of a volume read from DICOM, as the series scan read its file.

    `size` (bytes) and `mtime_ns`: the file's when its header was read; `position`:
    ImagePositionPatient (x, y, z) as written in the file (DS strings, LPS mm).
    """

    path: Path
    size: int
    mtime_ns: int
    sop_class_uid: str
    sop_instance_uid: str
    frame_of_reference_uid: str
    position: tuple[str, str, str]

    def changed(self) -> bool:
        """Whether the file is gone, or its size or modification time differs from when it
        was read (then it was rewritten or replaced)."""
        return _file_stamp(self.path) != (self.size, self.mtime_ns)


@dataclass(frozen=True)
class SeriesInfo:
    """One DICOM series found in a folder (headers only).

    `series_instance_uid` is "" for files without one. `files`: every file of the series;
    `slices`: the image slices among them (empty for non-image objects such as SEG, RTSTRUCT
    or SR). `orientation`: "axial", "coronal" or "sagittal" (the patient axis closest to the
    slice normal), "mixed" when the slices differ, "" for non-image series. `unplaced`: files
    with image rows and columns but no ImagePositionPatient or ImageOrientationPatient (in a
    series of slices: a damaged slice whose place is unknown).
    """

    series_instance_uid: str
    study_instance_uid: str
    modality: str
    description: str
    patient_id: str
    patient_name: str
    files: tuple[Path, ...] = field(repr=False)
    slices: tuple[SliceHeader, ...] = field(repr=False)
    orientation: str
    unplaced: tuple[Path, ...] = field(default=(), repr=False)

    @property
    def num_slices(self) -> int:
        """Number of image slices (0 for a non-image series)."""
        return len(self.slices)

    @property
    def is_image(self) -> bool:
        """True when the series holds image slices."""
        return bool(self.slices)

    @property
    def display_uid(self) -> str:
        """The SeriesInstanceUID, or "(no SeriesInstanceUID)"."""
        return self.series_instance_uid or NO_SERIES_UID

    def summary(self) -> str:
        """One line: uid, modality, orientation, slice or file count, description."""
        count = f"{self.num_slices} slices" if self.is_image else f"{len(self.files)} file(s)"
        parts = [self.modality or "?", self.orientation, count]
        text = f"{self.display_uid} ({', '.join(p for p in parts if p)}"
        return text + (f", '{self.description}')" if self.description else ")")


@dataclass(frozen=True)
class _Plan:
    """Sorted slices and the grid they give; `resample_from` holds the source positions (mm
    along the normal, relative to the first slice) when z must be resampled, else None."""

    series: SeriesInfo
    slices: tuple[SliceHeader, ...]
    geometry: Geometry
    resample_from: npt.NDArray[np.float64] | None


def list_dicom_series(folder: PathLike) -> list[SeriesInfo]:
    """All DICOM series in `folder` and its subfolders, from headers only.

    Non-DICOM files and DICOMDIR are skipped (counted in a DEBUG log). Files without a
    SeriesInstanceUID form one series with uid "". Image series come first, preferred ones
    (CT, axial, most slices) first; non-image series (SEG, RTSTRUCT, SR) last.
    Raises `InputError` when the folder does not exist.
    """
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"{root}: no such folder; give the folder that holds the DICOM series")
    groups: dict[str, list[tuple[Path, tuple[int, int], Any]]] = {}
    skipped: Counter[str] = Counter()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        stamp = _file_stamp(path)  # before reading: a change during the read shows later
        dataset = _read_header(path) if stamp is not None else None
        if stamp is None or dataset is None:
            skipped["not DICOM"] += 1
        elif _is_dicomdir(path, dataset):
            skipped["DICOMDIR"] += 1
        else:
            uid = str(dataset.get("SeriesInstanceUID", "") or "")
            groups.setdefault(uid, []).append((path, stamp, dataset))
    if skipped:
        logger.debug("%s: skipped %s", root, ", ".join(f"{n} {k}" for k, n in skipped.items()))
    series = [_series_info(uid, members) for uid, members in groups.items()]
    return sorted(series, key=_preference, reverse=True)


def find_dicom_series(
    folder: PathLike, *, series_uid: str | None = None, prefer_uids: Collection[str] = ()
) -> SeriesInfo:
    """The image series of `folder` to read: `series_uid`, else the first image series whose
    uid is in `prefer_uids`, else the axial CT with most slices.

    Logs (INFO) which series was picked when there were several. Raises `InputError` for a
    folder without DICOM files or without image series, and for an unknown `series_uid`
    (the message lists the series available).
    """
    root = Path(folder)
    found = list_dicom_series(root)
    if not found:
        n_files = _count_files(root)
        what = f"none of its {n_files} files is DICOM" if n_files else "it is empty"
        raise InputError(
            f"{root}: no DICOM files found ({what}, subfolders included); give the folder "
            "that holds the CT series"
        )
    images = [s for s in found if s.is_image]
    if not images:
        others = ", ".join(f"{s.modality or '?'} ({len(s.files)} file(s))" for s in found)
        raise InputError(
            f"{root}: no DICOM image series, only non-image objects: {others}; give the "
            "folder of the CT images"
        )
    if series_uid is not None:
        for s in images:
            if s.series_instance_uid == series_uid:
                return s
        raise InputError(
            f"{root}: no image series with SeriesInstanceUID {series_uid or NO_SERIES_UID}; "
            f"available: {'; '.join(s.summary() for s in images)}"
        )
    chosen = next((s for s in images if s.series_instance_uid in prefer_uids), images[0])
    if len(found) > 1:
        logger.info(
            "%s holds %d DICOM series; picked %s; others: %s (pass series_uid to choose)",
            root,
            len(found),
            chosen.summary(),
            "; ".join(s.summary() for s in found if s is not chosen),
        )
    return chosen


def read_dicom_geometry(folder: PathLike, *, series_uid: str | None = None) -> Geometry:
    """The grid of a DICOM series from its headers only (no pixel decoding).

    Same series choice and checks as `read_dicom_series`, whose volume has this geometry.
    """
    return series_geometry(find_dicom_series(folder, series_uid=series_uid))


def series_geometry(series: SeriesInfo) -> Geometry:
    """The grid of an image series from `list_dicom_series`/`find_dicom_series` (headers only;
    the checks of `read_dicom_series` apply)."""
    return _plan(series).geometry


def read_dicom_series(folder: PathLike, *, series_uid: str | None = None) -> Volume:
    """Read a DICOM image series into a `Volume` (z, y, x) of HU with its geometry.

    `series_uid` chooses a series when the folder holds several; by default the axial CT
    series with most slices. The array is int16 when all values fit, else float32. See the
    module docstring for the geometry, the checks (each an `InputError`) and the metadata.
    """
    root = Path(folder)
    plan = _plan(find_dicom_series(root, series_uid=series_uid))
    array = _decode(plan)
    if plan.resample_from is not None:
        array = _resample_z(array, plan.resample_from, plan.geometry)
    volume = Volume(array, plan.geometry, _metadata(root, plan))
    logger.debug("read DICOM %s: shape %s spacing %s", root, volume.shape, volume.spacing)
    return volume


def referenced_sop_instance_uids(volume: Volume) -> list[str]:
    """The SOPInstanceUIDs of the sorted source slices of a volume read from DICOM.

    Raises `InputError` when the volume was not read from a DICOM series.
    """
    raw = volume.metadata.get("sop_instance_uids")
    if raw is None:
        raise InputError(
            "the image was not read from a DICOM series (no SOPInstanceUIDs); give the CT "
            "as a DICOM folder"
        )
    return [str(uid) for uid in json.loads(raw)]


def source_slices(volume: Volume) -> list[SourceSlice]:
    """The source slices of a volume read from DICOM, in its z order, as they were read.

    Raises `InputError` when the volume does not carry them (not read by `read_dicom_series`).
    """
    return [
        SourceSlice(
            path=Path(item["path"]),
            size=int(item["size"]),
            mtime_ns=int(item["mtime_ns"]),
            sop_class_uid=str(item["sop_class_uid"]),
            sop_instance_uid=str(item["sop_instance_uid"]),
            frame_of_reference_uid=str(item["frame_of_reference_uid"]),
            position=(str(item["position"][0]), str(item["position"][1]),
                      str(item["position"][2])),
        )
        for item in _recorded(volume, "dicom_slices", "the DICOM files it was read from")
    ]


def geometry_as_read(volume: Volume) -> Geometry:
    """The grid the DICOM headers gave when `volume` was read (metadata `dicom_geometry`).

    Raises `InputError` when the volume does not carry it (not read by `read_dicom_series`).
    """
    grid = _recorded(volume, "dicom_geometry", "the grid of its DICOM series")
    return Geometry(
        tuple(grid["shape"]), tuple(grid["spacing"]), tuple(grid["origin"]),
        tuple(grid["direction"]),
    )


def _recorded(volume: Volume, key: str, what: str) -> Any:
    """The JSON value the series scan recorded in `volume.metadata[key]`; `InputError` naming
    `what` when the volume does not carry it (not read by `read_dicom_series`)."""
    raw = volume.metadata.get(key)
    if raw is None:
        raise InputError(
            f"the CT does not record {what} (no '{key}' metadata); read it with "
            "read_dicom_series or read_image(folder)"
        )
    return json.loads(raw)


# --- headers and series ---------------------------------------------------------------------


def _file_stamp(path: Path) -> tuple[int, int] | None:
    """(size in bytes, modification time in ns) of a file, None when it cannot be read."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns


def _read_header(path: Path) -> Any | None:
    """The header tags the series scan needs (no pixel data), or None when it is not DICOM."""
    return read_header(path, tags=_HEADER_TAGS)


def read_header(path: PathLike, *, tags: list[str] | None = None) -> Any | None:
    """The header of a DICOM file without pixel data (only `tags` when given), or None when
    it is not DICOM or cannot be read."""
    try:
        return pydicom.dcmread(path, stop_before_pixels=True, specific_tags=tags)
    except (InvalidDicomError, OSError, EOFError, ValueError):
        return None


def _is_dicomdir(path: Path, dataset: Any) -> bool:
    meta_class = getattr(dataset, "file_meta", None)
    sop_class = meta_class.get("MediaStorageSOPClassUID") if meta_class is not None else None
    return path.name.upper() == "DICOMDIR" or _DIRECTORY_SOP_CLASS in (
        str(sop_class or ""),
        str(dataset.get("SOPClassUID", "")),
    )


def _series_info(uid: str, members: list[tuple[Path, tuple[int, int], Any]]) -> SeriesInfo:
    first = members[0][2]
    headers = (_slice_header(p, stamp, ds) for p, stamp, ds in members)
    slices = tuple(h for h in headers if h is not None)
    non_image = len(members) - len(slices)
    if slices and non_image:
        logger.debug("series %s: ignored %d non-image file(s)", uid or NO_SERIES_UID, non_image)
    return SeriesInfo(
        series_instance_uid=uid,
        study_instance_uid=str(first.get("StudyInstanceUID", "") or ""),
        modality=str(first.get("Modality", "") or ""),
        description=str(first.get("SeriesDescription", "") or "").strip(),
        patient_id=str(first.get("PatientID", "") or "").strip(),
        patient_name=str(first.get("PatientName", "") or "").strip(),
        files=tuple(p for p, _, _ in members),
        slices=slices,
        orientation=_orientation_label(slices),
        unplaced=tuple(p for p, _, ds in members if _unplaced_image(ds)),
    )


def _unplaced_image(ds: Any) -> bool:
    """An image (rows and columns) without its position or orientation in the patient."""
    has_size = ds.get("Rows") is not None and ds.get("Columns") is not None
    placed = ds.get("ImagePositionPatient") is not None and \
        ds.get("ImageOrientationPatient") is not None
    return has_size and not placed


def _slice_header(path: Path, stamp: tuple[int, int], ds: Any) -> SliceHeader | None:
    """The slice of an image file, or None for a non-image object (no position or size)."""
    ipp, iop = ds.get("ImagePositionPatient"), ds.get("ImageOrientationPatient")
    rows, columns = ds.get("Rows"), ds.get("Columns")
    if ipp is None or iop is None or rows is None or columns is None:
        return None
    if len(ipp) != 3 or len(iop) != 6:
        return None
    spacing = ds.get("PixelSpacing")
    return SliceHeader(
        path=path,
        sop_instance_uid=str(ds.get("SOPInstanceUID", "") or ""),
        position=(float(ipp[0]), float(ipp[1]), float(ipp[2])),
        orientation=(
            float(iop[0]),
            float(iop[1]),
            float(iop[2]),
            float(iop[3]),
            float(iop[4]),
            float(iop[5]),
        ),
        rows=int(rows),
        columns=int(columns),
        pixel_spacing=(float(spacing[0]), float(spacing[1])) if spacing else None,
        sop_class_uid=str(ds.get("SOPClassUID", "") or ""),
        frame_of_reference_uid=str(ds.get("FrameOfReferenceUID", "") or ""),
        position_text=(str(ipp[0]), str(ipp[1]), str(ipp[2])),
        file_stamp=stamp,
    )


def _normal(orientation: Sequence[float]) -> npt.NDArray[np.float64]:
    """Unit slice normal (row cosine x column cosine) of an ImageOrientationPatient."""
    n = np.cross(np.asarray(orientation[:3], float), np.asarray(orientation[3:], float))
    norm = float(np.linalg.norm(n))
    return n / norm if norm > 0 else n


def _orientation_label(slices: Sequence[SliceHeader]) -> str:
    if not slices:
        return ""
    if len(_distinct_orientations(slices)) > 1:
        return "mixed"
    axis = int(np.argmax(np.abs(_normal(slices[0].orientation))))
    return ("sagittal", "coronal", "axial")[axis]


def _distinct_orientations(slices: Sequence[SliceHeader]) -> list[tuple[tuple[float, ...], int]]:
    """The orientations among `slices` (within ORIENTATION_TOLERANCE) with their counts."""
    distinct: list[tuple[tuple[float, ...], int]] = []
    for s in slices:
        for k, (orientation, count) in enumerate(distinct):
            if np.allclose(s.orientation, orientation, rtol=0, atol=ORIENTATION_TOLERANCE):
                distinct[k] = (orientation, count + 1)
                break
        else:
            distinct.append((s.orientation, 1))
    return distinct


def _preference(series: SeriesInfo) -> tuple[bool, bool, bool, int]:
    return (
        series.is_image,
        series.modality == "CT",
        series.orientation == "axial",
        series.num_slices,
    )


def _count_files(root: Path) -> int:
    return sum(1 for p in root.rglob("*") if p.is_file())


# --- checks and geometry --------------------------------------------------------------------


def _plan(series: SeriesInfo) -> _Plan:
    """Check the slices of `series`, sort them along the normal and compute the grid."""
    name = f"series {series.display_uid}"
    slices = series.slices
    if not slices:
        raise InputError(
            f"{name} is a {series.modality or 'non-image'} object without image slices; give "
            "the folder of the CT images"
        )
    if series.unplaced:
        raise InputError(
            f"{name}: {series.unplaced[0]} is an image slice without ImagePositionPatient or "
            f"ImageOrientationPatient ({len(series.unplaced)} such file(s)), so its place in "
            "the volume is unknown; re-export the series with complete headers"
        )
    if len(slices) == 1:
        raise InputError(
            f"{name} has a single slice (a 2D image) in {slices[0].path.parent}; livermets "
            "needs a 3D volume: give the folder with all the slices of the CT series"
        )
    _check_orientation(name, slices)
    pixel_spacing = _check_in_plane(name, slices)
    row_cos = np.asarray(slices[0].orientation[:3], float)
    col_cos = np.asarray(slices[0].orientation[3:], float)
    normal = _normal(slices[0].orientation)
    ordered = sorted(slices, key=lambda s: float(np.dot(s.position, normal)))
    positions = np.asarray([s.position for s in ordered], dtype=np.float64)
    offsets = (positions - positions[0]) @ normal
    _check_duplicates(name, offsets, positions[0] @ normal)
    _check_tilt(name, positions, normal, min(pixel_spacing))
    gaps = np.diff(offsets)
    median = float(np.median(gaps))
    _check_gaps(name, offsets, median, positions[0] @ normal)
    resample_from: npt.NDArray[np.float64] | None = None
    z_spacing, n_slices = float(offsets[-1]) / (len(offsets) - 1), len(offsets)
    if np.any(np.abs(gaps - median) > UNIFORM_TOLERANCE * median):
        resample_from, z_spacing, n_slices = offsets, median, round(offsets[-1] / median) + 1
        logger.warning(
            "%s: slice spacing is not uniform (gaps %.3f to %.3f mm, median %.3f mm); "
            "resampling linearly along the slice normal onto %d slices %.3f mm apart",
            name,
            float(gaps.min()),
            float(gaps.max()),
            median,
            n_slices,
            median,
        )
    direction: Direction = tuple(np.column_stack([row_cos, col_cos, normal]).ravel())
    geometry = Geometry(
        (n_slices, ordered[0].rows, ordered[0].columns),
        (z_spacing, pixel_spacing[0], pixel_spacing[1]),
        ordered[0].position,
        direction,
    )
    return _Plan(series, tuple(ordered), geometry, resample_from)


def _check_orientation(name: str, slices: Sequence[SliceHeader]) -> None:
    distinct = _distinct_orientations(slices)
    if len(distinct) > 1:
        found = ", ".join(f"[{', '.join(f'{v:.4g}' for v in o)}] ({n} slices)" for o, n in distinct)
        raise InputError(
            f"{name} mixes slice orientations (ImageOrientationPatient {found}); split the "
            "series into one folder per orientation"
        )


def _check_in_plane(name: str, slices: Sequence[SliceHeader]) -> tuple[float, float]:
    """The common pixel spacing (y, x) mm; refuse mixed sizes, spacings or a missing one."""
    sizes = Counter(f"{s.rows}x{s.columns}" for s in slices)
    if len(sizes) > 1:
        found = ", ".join(f"{k} ({n} slices)" for k, n in sizes.items())
        raise InputError(
            f"{name} mixes image sizes (rows x columns: {found}); split the series into one "
            "folder per image size"
        )
    missing = [s.path for s in slices if s.pixel_spacing is None]
    if missing:
        raise InputError(
            f"{name}: {missing[0]} has no PixelSpacing, so its voxel size is unknown; "
            "re-export the series from the scanner or PACS"
        )
    spacings = [s.pixel_spacing for s in slices if s.pixel_spacing is not None]
    first = spacings[0]
    if any(not np.allclose(sp, first, rtol=0, atol=PIXEL_SPACING_TOLERANCE_MM) for sp in spacings):
        found = ", ".join(sorted({f"{sp[0]:.4g} x {sp[1]:.4g}" for sp in spacings}))
        raise InputError(
            f"{name} mixes pixel spacings ({found} mm); split the series into one folder per "
            "pixel spacing"
        )
    return first


def _check_duplicates(name: str, offsets: npt.NDArray[np.float64], start: float) -> None:
    close = np.flatnonzero(np.diff(offsets) < DUPLICATE_TOLERANCE_MM)
    if close.size:
        at = start + float(offsets[close[0]])
        raise InputError(
            f"{name} has {close.size} slice(s) at duplicate positions (first at {at:.2f} mm "
            "along the slice normal); it probably holds two reconstructions: remove the "
            "duplicates or split the series"
        )


def _check_tilt(
    name: str,
    positions: npt.NDArray[np.float64],
    normal: npt.NDArray[np.float64],
    pixel_spacing: float,
) -> None:
    """Refuse slices not stacked along their normal (gantry tilt), naming the angle."""
    rel = positions - positions[0]
    along = rel @ normal
    in_plane = rel - np.outer(along, normal)
    if float(np.max(np.linalg.norm(in_plane, axis=1))) <= TILT_TOLERANCE_PIXELS * pixel_spacing:
        return
    slope = (along @ in_plane) / float(along @ along)  # in-plane shift per mm along the normal
    angle = math.degrees(math.atan(float(np.linalg.norm(slope))))
    raise InputError(
        f"{name} was acquired with gantry tilt (slices stacked {angle:.2f} degrees off their "
        "normal); resample (de-tilt) it in the scanner software or with a tool such as "
        "dcm2niix, then give the corrected series"
    )


def _check_gaps(name: str, offsets: npt.NDArray[np.float64], median: float, start: float) -> None:
    gaps = np.diff(offsets)
    big = np.flatnonzero(gaps >= MISSING_SLICE_RATIO * median)
    if big.size:
        k = int(big[0])
        missing = round(float(gaps[k]) / median) - 1
        a, b = start + float(offsets[k]), start + float(offsets[k + 1])
        more = f" (and {big.size - 1} more gap(s))" if big.size > 1 else ""
        raise InputError(
            f"{name} is missing slices: a gap of {gaps[k]:.2f} mm between {a:.2f} and {b:.2f} "
            f"mm along the slice normal, about {max(missing, 1)} slice(s) missing at the "
            f"usual {median:.2f} mm{more}; re-export the complete series"
        )


# --- pixels ---------------------------------------------------------------------------------


@contextmanager
def _itk_warnings_off() -> Iterator[None]:
    """Silence ITK's own spacing warnings: this module checks the spacing itself."""
    previous = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(previous)


def _decode(plan: _Plan) -> npt.NDArray[Any]:
    """Pixel values (n, rows, columns) of the sorted slices in HU (rescale applied)."""
    reader = sitk.ImageSeriesReader()
    reader.SetImageIO("GDCMImageIO")
    reader.SetFileNames([str(s.path) for s in plan.slices])
    try:
        with _itk_warnings_off():
            image = reader.Execute()
    except RuntimeError as exc:
        last_line = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unknown error"
        detail = re.sub(r"^ITK ERROR: \w+\(0x[0-9a-fA-F]+\): ", "", last_line)
        raise InputError(
            f"series {plan.series.display_uid}: the pixel data cannot be decoded ({detail}): "
            "a file is truncated or uses an unsupported compression; re-copy the series, or "
            "re-export it uncompressed"
        ) from exc
    array = sitk.GetArrayFromImage(image)
    expected = (len(plan.slices), plan.geometry.shape[1], plan.geometry.shape[2])
    if array.shape != expected:
        raise InputError(
            f"series {plan.series.display_uid}: decoded pixel data of shape {array.shape} "
            f"instead of {expected} (multi-frame or colour images?); give a series of "
            "single-frame greyscale CT slices"
        )
    return _hu_dtype(array)


def _hu_dtype(array: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """int16 when all values are integers within int16, else float32."""
    info = np.iinfo(np.int16)
    low, high = float(array.min()), float(array.max())
    integral = np.issubdtype(array.dtype, np.integer) or bool(np.all(np.mod(array, 1) == 0))
    if integral and info.min <= low and high <= info.max:
        return array.astype(np.int16, copy=False)
    return array.astype(np.float32, copy=False)


def _resample_z(
    array: npt.NDArray[Any], source: npt.NDArray[np.float64], geometry: Geometry
) -> npt.NDArray[Any]:
    """Linear interpolation along axis 0 from positions `source` (mm from the first slice)
    onto `geometry`'s uniform slices; integer input is rounded back to its dtype."""
    targets = np.arange(geometry.shape[0]) * geometry.spacing[0]
    out = np.empty(geometry.shape, dtype=array.dtype)
    for k, t in enumerate(targets):
        i = int(np.clip(np.searchsorted(source, t, side="right") - 1, 0, len(source) - 2))
        w = float(np.clip((t - source[i]) / (source[i + 1] - source[i]), 0.0, 1.0))
        value = (1.0 - w) * array[i].astype(np.float64) + w * array[i + 1].astype(np.float64)
        out[k] = np.rint(value) if np.issubdtype(array.dtype, np.integer) else value
    return out


def _metadata(root: Path, plan: _Plan) -> dict[str, str]:
    series = plan.series
    metadata = {
        "format": "dicom",
        "source": str(root),
        "modality": series.modality,
        "study_instance_uid": series.study_instance_uid,
        "series_instance_uid": series.series_instance_uid,
        "series_description": series.description,
        "sop_instance_uids": json.dumps([s.sop_instance_uid for s in plan.slices]),
        "dicom_slices": json.dumps([_slice_record(s) for s in plan.slices]),
        "dicom_geometry": json.dumps(plan.geometry.to_json()),
    }
    if series.patient_id:
        metadata["patient_id"] = series.patient_id
    if series.patient_name:
        metadata["patient_name"] = series.patient_name
    if plan.resample_from is not None:
        metadata["resampled_z"] = "true"
    return metadata


def _slice_record(s: SliceHeader) -> dict[str, Any]:
    """What `source_slices` reads back of one slice (JSON)."""
    return {
        "path": str(s.path),
        "size": s.file_stamp[0],
        "mtime_ns": s.file_stamp[1],
        "sop_class_uid": s.sop_class_uid,
        "sop_instance_uid": s.sop_instance_uid,
        "frame_of_reference_uid": s.frame_of_reference_uid,
        "position": list(s.position_text),
    }
