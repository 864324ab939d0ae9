"""Read DICOM Segmentation objects (SEG) onto the grid of the CT they were drawn on.

Each frame of a SEG is one 2D mask of one segment. Frames are placed on the reference grid
by their ImagePositionPatient (PlanePositionSequence in the per-frame or shared functional
groups), converted to continuous voxel indices with `Geometry.physical_to_index`:

- the slice index must lie within 0.1 voxel of an integer inside the grid, else the SEG does
  not lie on that CT's slices (`InputError`);
- the in-plane offset (rows, columns) must be integral within 0.1 pixel; the frame is placed
  at that offset and clipped to the grid, so SEGs covering a sub-region work (a WARNING is
  logged when foreground pixels fall outside the grid);
- ImageOrientationPatient must match the reference's row and column directions within 1e-3
  and PixelSpacing its (y, x) spacing within 1e-3 mm.

BINARY frames are masks; FRACTIONAL frames are thresholded at 50% of MaximumFractionalValue
(value >= max / 2). Several frames of the same segment on the same slice are OR-ed.

`write_dicom_seg` writes BINARY SEGs onto the slices of the CT series a `Volume` was read from
(one frame per slice and non-empty segment; see its docstring), built with pydicom by
`livermets.io.seg_dataset` as highdicom's `Segmentation` builds them (highdicom is not imported:
it cost about 0.6 s a SEG, half of it loading its tables of the standard).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import generate_uid

from livermets import __version__
from livermets.errors import InputError
from livermets.io.atomic import atomic_path
from livermets.io.dicom import (
    SourceSlice,
    find_dicom_series,
    geometry_as_read,
    read_header,
    referenced_sop_instance_uids,
    series_geometry,
    source_slices,
)
from livermets.io.seg_dataset import (
    SEGMENTATION_STORAGE,
    Code,
    SegSeries,
    segmentation_dataset,
)
from livermets.io.volume import Geometry, Volume
from livermets.types import PathLike

logger = logging.getLogger(__name__)

#: A frame may sit this far (in voxels) from the reference's voxel centres.
INDEX_TOLERANCE = 0.1
ORIENTATION_TOLERANCE = 1e-3
PIXEL_SPACING_TOLERANCE_MM = 1e-3


@dataclass(frozen=True)
class Segment:
    """One segment of a SEG: `mask` is a uint8 0/1 `Volume` (z, y, x) on the reference grid.

    `label`: SegmentLabel (or SegmentDescription); `category` and `property_type`: the code
    meanings of SegmentedPropertyCategoryCodeSequence and SegmentedPropertyTypeCodeSequence
    (e.g. "Tissue", "Liver"), None when absent.
    """

    number: int
    label: str
    mask: Volume = field(repr=False)
    category: str | None = None
    property_type: str | None = None


def read_dicom_seg(path: PathLike, reference: Geometry) -> list[Segment]:
    """The segments of a DICOM SEG file as masks on `reference` (the CT grid), by number.

    Raises `InputError` for a file that is not a SEG, an unsupported segmentation type, or
    frames that do not lie on the reference's slices, orientation or pixel spacing.
    """
    p = Path(path)
    return _segments(_load_seg(p), p, reference)


def read_dicom_seg_for_series(
    seg_path: PathLike, ct_folder: PathLike, *, series_uid: str | None = None
) -> list[Segment]:
    """Read a SEG onto the CT series of `ct_folder` (grid from headers only).

    Without `series_uid`, the folder's series that the SEG references is used when present,
    else the default choice of `find_dicom_series`. When both the SEG's
    ReferencedSeriesSequence and the CT name a SeriesInstanceUID, they must match
    (`InputError` naming both otherwise).
    """
    p = Path(seg_path)
    dataset = _load_seg(p)
    referenced = {
        str(item.get("SeriesInstanceUID", "") or "")
        for item in dataset.get("ReferencedSeriesSequence", [])
    } - {""}
    series = find_dicom_series(ct_folder, series_uid=series_uid, prefer_uids=referenced)
    if referenced and series.series_instance_uid and series.series_instance_uid not in referenced:
        raise InputError(
            f"{p} was drawn on series {', '.join(sorted(referenced))} but {ct_folder} holds "
            f"series {series.series_instance_uid}; give the CT series the SEG refers to"
        )
    return _segments(dataset, p, series_geometry(series))


def _load_seg(path: Path) -> Any:
    """The full dataset of a SEG file; `InputError` when missing or not a SEG."""
    if not path.is_file():
        raise InputError(f"{path}: no such file; give the path of a DICOM SEG file")
    try:
        dataset = pydicom.dcmread(path)
    except (InvalidDicomError, OSError, EOFError, ValueError) as exc:
        raise InputError(f"{path} is not a DICOM file; give a DICOM SEG file") from exc
    if str(dataset.get("SOPClassUID", "")) != SEGMENTATION_STORAGE:
        kind = str(dataset.get("Modality", "") or "unknown modality")
        raise InputError(
            f"{path} is a DICOM {kind} object, not a DICOM Segmentation (SEG); give a SEG file"
        )
    if not dataset.get("SegmentSequence"):
        raise InputError(
            f"{path}: the SEG defines no segments (empty SegmentSequence); re-export it"
        )
    seg_type = str(dataset.get("SegmentationType", ""))
    if seg_type not in ("BINARY", "FRACTIONAL"):
        raise InputError(
            f"{path}: segmentation type '{seg_type}' is not supported (only BINARY and "
            "FRACTIONAL); re-export it as a BINARY SEG"
        )
    return dataset


def _segments(dataset: Any, path: Path, reference: Geometry) -> list[Segment]:
    frames = _binary_frames(dataset)
    masks = {
        int(item.SegmentNumber): np.zeros(reference.shape, np.uint8)
        for item in dataset.SegmentSequence
    }
    lost = 0
    for k in range(frames.shape[0]):
        number = _frame_segment(dataset, k, path, masks)
        z, y0, x0 = _frame_offset(dataset, k, path, reference)
        lost += _paste(masks[number][z], frames[k], y0, x0)
    if lost:
        logger.warning(
            "%s: %d foreground pixel(s) lie outside the CT grid and were dropped", path, lost
        )
    segments = [_segment(item, masks, path, reference) for item in dataset.SegmentSequence]
    return sorted(segments, key=lambda s: s.number)


def _binary_frames(dataset: Any) -> npt.NDArray[np.bool_]:
    """All frames as booleans (frames, rows, columns); FRACTIONAL thresholded at 50%."""
    pixels = np.asarray(dataset.pixel_array)
    if pixels.ndim == 2:
        pixels = pixels[np.newaxis]
    if str(dataset.SegmentationType) == "FRACTIONAL":
        maximum = float(dataset.get("MaximumFractionalValue", 255) or 255)
        return np.asarray(pixels >= maximum / 2.0)
    return np.asarray(pixels > 0)


def _frame_item(dataset: Any, k: int, group: str) -> Any | None:
    """The first item of functional group `group` for frame k (per-frame, else shared)."""
    per_frame = dataset.get("PerFrameFunctionalGroupsSequence")
    shared = dataset.get("SharedFunctionalGroupsSequence")
    for item in (
        per_frame[k] if per_frame and k < len(per_frame) else None,
        shared[0] if shared else None,
    ):
        sequence = item.get(group) if item is not None else None
        if sequence:
            return sequence[0]
    return None


def _frame_segment(dataset: Any, k: int, path: Path, masks: dict[int, Any]) -> int:
    item = _frame_item(dataset, k, "SegmentIdentificationSequence")
    if item is None and len(masks) == 1:
        return next(iter(masks))
    number = int(item.ReferencedSegmentNumber) if item is not None else -1
    if number not in masks:
        raise InputError(
            f"{path}: frame {k + 1} refers to segment {number}, which SegmentSequence does "
            "not define; the SEG is malformed: re-export it"
        )
    return number


def _frame_offset(dataset: Any, k: int, path: Path, reference: Geometry) -> tuple[int, int, int]:
    """Slice index and in-plane (row, column) offset of frame k on the reference grid."""
    _check_frame_grid(dataset, k, path, reference)
    position = _frame_item(dataset, k, "PlanePositionSequence")
    if position is None or "ImagePositionPatient" not in position:
        raise InputError(
            f"{path}: frame {k + 1} has no ImagePositionPatient, so it cannot be placed on "
            "the CT; re-export the SEG"
        )
    ipp = [float(v) for v in position.ImagePositionPatient]
    index = reference.physical_to_index(ipp)
    rounded = np.rint(index)
    z = int(rounded[0])
    if abs(index[0] - rounded[0]) > INDEX_TOLERANCE or not 0 <= z < reference.shape[0]:
        raise InputError(
            f"{path}: frame {k + 1} at z = {ipp[2]:.2f} mm falls at slice index "
            f"{index[0]:.2f} of the CT ({reference.shape[0]} slices); the SEG does not lie on "
            "that CT's slices: give the CT series it was drawn on"
        )
    if np.any(np.abs(index[1:] - rounded[1:]) > INDEX_TOLERANCE):
        raise InputError(
            f"{path}: frame {k + 1} is shifted by a fraction of a pixel from the CT grid "
            f"(row, column {index[1]:.2f}, {index[2]:.2f}); the SEG does not lie on that CT's "
            "pixels: give the CT series it was drawn on"
        )
    return z, int(rounded[1]), int(rounded[2])


def _check_frame_grid(dataset: Any, k: int, path: Path, reference: Geometry) -> None:
    """Refuse frame k when its orientation or pixel spacing differs from the reference."""
    plane = _frame_item(dataset, k, "PlaneOrientationSequence")
    if plane is not None and "ImageOrientationPatient" in plane:
        iop = np.asarray([float(v) for v in plane.ImageOrientationPatient])
        expected = reference.direction_matrix[:, :2].T.ravel()  # row cosine, column cosine
        if not np.allclose(iop, expected, rtol=0, atol=ORIENTATION_TOLERANCE):
            raise InputError(
                f"{path}: frame orientation {np.round(iop, 4).tolist()} differs from the CT's "
                f"{np.round(expected, 4).tolist()}; give the CT series the SEG was drawn on"
            )
    measures = _frame_item(dataset, k, "PixelMeasuresSequence")
    if measures is not None and "PixelSpacing" in measures:
        spacing = [float(v) for v in measures.PixelSpacing]
        expected_yx = reference.spacing[1:]
        if not np.allclose(spacing, expected_yx, rtol=0, atol=PIXEL_SPACING_TOLERANCE_MM):
            raise InputError(
                f"{path}: pixel spacing {spacing} mm differs from the CT's "
                f"{list(expected_yx)} mm; give the CT series the SEG was drawn on"
            )


def _paste(target: npt.NDArray[np.uint8], frame: npt.NDArray[np.bool_], y0: int, x0: int) -> int:
    """OR `frame` into the 2D `target` at offset (y0, x0), clipped; returns pixels lost."""
    ny, nx = target.shape
    fy, fx = frame.shape
    ys, ye = max(y0, 0), min(y0 + fy, ny)
    xs, xe = max(x0, 0), min(x0 + fx, nx)
    if ys >= ye or xs >= xe:
        return int(frame.sum())
    inside = frame[ys - y0 : ye - y0, xs - x0 : xe - x0]
    target[ys:ye, xs:xe] |= inside.astype(np.uint8)
    return int(frame.sum()) - int(inside.sum())


def _segment(
    item: Any, masks: dict[int, npt.NDArray[np.uint8]], path: Path, reference: Geometry
) -> Segment:
    number = int(item.SegmentNumber)
    label = str(item.get("SegmentLabel", "") or item.get("SegmentDescription", "") or "")
    metadata = {
        "format": "dicom-seg",
        "source": str(path),
        "segment_number": str(number),
        "segment_label": label,
    }
    return Segment(
        number=number,
        label=label,
        mask=Volume(masks[number], reference, metadata),
        category=_code_meaning(item, "SegmentedPropertyCategoryCodeSequence"),
        property_type=_code_meaning(item, "SegmentedPropertyTypeCodeSequence"),
    )


def _code_meaning(item: Any, sequence: str) -> str | None:
    codes = item.get(sequence)
    if not codes:
        return None
    meaning = codes[0].get("CodeMeaning")
    return str(meaning) if meaning else None


# --- writing --------------------------------------------------------------------------------

#: SNOMED CT codes for the segments livermets writes (DICOM CID 7150 / 7151 / 7166).
TISSUE = Code("85756007", "SCT", "Tissue")
LIVER = Code("10200004", "SCT", "Liver")
MORPHOLOGICALLY_ALTERED_STRUCTURE = Code("49755003", "SCT", "Morphologically Altered Structure")
METASTATIC_NEOPLASM = Code("14799000", "SCT", "Neoplasm, Metastatic")
#: Algorithm family of the segments (DCM 123110 "Artificial Intelligence").
ARTIFICIAL_INTELLIGENCE = Code("123110", "DCM", "Artificial Intelligence")

MANUFACTURER = "livermets"
SEG_SERIES_NUMBER = 9901
CONTENT_LABEL = "LIVERMETS"


@dataclass(frozen=True, eq=False)
class SegmentSpec:
    """One segment to write: `mask` (z, y, x) of 0/1 (or bool) on the source CT's grid.

    `category` and `property_type`: the SegmentedPropertyCategory and SegmentedPropertyType
    codes (e.g. Tissue / Liver); `anatomic_region`: optional AnatomicRegionSequence code.
    `liver_segment` and `metastases_segment` build the usual two.
    """

    label: str
    mask: npt.NDArray[Any] = field(repr=False)
    category: Code
    property_type: Code
    anatomic_region: Code | None = None


def liver_segment(mask: npt.NDArray[Any]) -> SegmentSpec:
    """The liver: category Tissue (SCT 85756007), type Liver (SCT 10200004)."""
    return SegmentSpec("Liver", mask, TISSUE, LIVER)


def metastases_segment(mask: npt.NDArray[Any]) -> SegmentSpec:
    """All liver metastases as one segment: category Morphologically Altered Structure
    (SCT 49755003), type Neoplasm, Metastatic (SCT 14799000), anatomic region Liver."""
    return SegmentSpec(
        "Liver metastases", mask, MORPHOLOGICALLY_ALTERED_STRUCTURE, METASTATIC_NEOPLASM, LIVER
    )


def write_dicom_seg(
    path: PathLike,
    segments: Sequence[SegmentSpec],
    source: Volume,
    *,
    series_description: str = "livermets",
    series_number: int = SEG_SERIES_NUMBER,
) -> Path:
    """Write `segments` as a BINARY DICOM SEG referencing the CT series `source` was read from.

    `source`: a `Volume` from `read_dicom_series` / `read_image(folder)`; the SEG is built from
    the headers its series scan read (`dicom.source_slices`) and the full header of its first
    slice, read again, in the volume's z order, so mask slice k becomes a frame at slice k's
    position (`seg_dataset` says what the SEG holds). Each mask is (z, y, x) =
    `source.shape`, values 0/1 (any dtype). Segments are numbered 1, 2, ... in the given
    order, algorithm type AUTOMATIC ("livermets", this package's version). Frames are written
    only for slices where a segment has foreground: an all-zero segment stays in
    SegmentSequence without frames (all frames are written, empty, when every segment is
    empty), and `read_dicom_seg` reads it back as all zeros. The SEG gets a fresh
    SeriesInstanceUID and SOPInstanceUID; the file is written atomically. A source series
    without FrameOfReferenceUID (e.g. 3D-IRCADb) gets one derived from its SeriesInstanceUID
    (the SEG requires it; a WARNING is logged).

    Raises `InputError` for no segments, a mask of another shape or with values other than
    0/1, a source not read from DICOM or resampled along z (or whose grid differs from the one
    its headers gave), source files that are missing or changed since the volume was read
    (size or modification time differs, or the folder is gone), and slices in several frames
    of reference.
    """
    target = Path(path)
    if not segments:
        raise InputError("no segments to write; give at least one mask")
    masks = [_checked_mask(spec, source) for spec in segments]
    slices = _source_slices(source)
    first = _first_header(slices[0], source)
    series = SegSeries(
        series_description=series_description[:64],  # LO: at most 64 characters
        series_number=series_number,
        software=MANUFACTURER,
        version=__version__,
        algorithm_family=ARTIFICIAL_INTELLIGENCE,
        content_label=CONTENT_LABEL,
        content_description=series_description[:64],
    )
    seg = segmentation_dataset(
        first, slices, _frame_of_reference(slices, source), segments, masks, series
    )
    with atomic_path(target) as tmp:
        seg.save_as(tmp, enforce_file_format=True)
    logger.info(
        "wrote DICOM SEG %s: %d segment(s), %d frame(s) on series %s",
        target,
        len(segments),
        int(seg.NumberOfFrames),
        source.metadata.get("series_instance_uid", ""),
    )
    return target


def _checked_mask(spec: SegmentSpec, source: Volume) -> npt.NDArray[Any]:
    """The mask of `spec` as an array; refuses another shape than the CT's, or values
    other than 0 and 1."""
    mask = np.asarray(spec.mask)
    if mask.shape != source.shape:
        raise InputError(
            f"segment '{spec.label}': mask shape (z, y, x) {list(mask.shape)} differs from "
            f"the CT's {list(source.shape)}; give masks on the grid of the CT they belong to"
        )
    if not _is_binary(mask):
        raise InputError(
            f"segment '{spec.label}': the mask holds values other than 0 and 1; give a "
            "binary mask (one segment per label)"
        )
    return mask


def _is_binary(mask: npt.NDArray[Any]) -> bool:
    """Whether every value of `mask` is 0 or 1 (what `np.isin(mask, (0, 1)).all()` says).

    One reduction for booleans and unsigned integers (the masks `predict` writes) instead of
    `np.isin`'s sort-based pass: 0.4 s less per 119 x 512 x 512 mask.
    """
    if mask.dtype == np.bool_:
        return True
    if mask.size == 0:
        return True
    if np.issubdtype(mask.dtype, np.unsignedinteger):
        return bool(mask.max() <= 1)
    if np.issubdtype(mask.dtype, np.integer):
        return bool(mask.min() >= 0 and mask.max() <= 1)
    return bool(((mask == 0) | (mask == 1)).all())


def _source_slices(source: Volume) -> list[SourceSlice]:
    """The source slices of `source` in its z order, checked: UIDs present, z not
    resampled, every file unchanged since it was read, the grid still the series' own."""
    uids = referenced_sop_instance_uids(source)
    series_uid = source.metadata.get("series_instance_uid", "")
    if not all(uids) or not series_uid:
        raise InputError(
            "the source DICOM series lacks SOPInstanceUIDs or a SeriesInstanceUID, so a DICOM "
            "SEG cannot reference it; use the NIfTI masks"
        )
    if source.metadata.get("resampled_z") == "true":
        raise InputError(
            "the CT was resampled along z when read (non-uniform slice spacing), so its "
            "slices no longer match the DICOM instances; a DICOM SEG cannot reference them: "
            "write the masks as NIfTI instead"
        )
    folder = source.metadata.get("source", "")
    if not folder:
        raise InputError(
            "the CT does not say which folder it was read from (no 'source' metadata); "
            "read it with read_dicom_series or read_image(folder)"
        )
    if not Path(folder).is_dir():
        raise InputError(f"{folder}: no such folder; give the folder that holds the DICOM series")
    slices = source_slices(source)
    changed = [s for s in slices if s.changed()]
    if changed:
        raise InputError(
            f"{folder}: {len(changed)} of the {len(uids)} source slices of series {series_uid} "
            "are no longer there (files moved, removed or replaced since the CT was read); "
            "re-read the CT from its folder"
        )
    difference = source.geometry.difference(geometry_as_read(source))
    if difference is not None:
        raise InputError(
            f"the CT's grid differs from its DICOM series in {folder} ({difference}): it was "
            "cropped or resampled after reading; give masks on the grid of the CT as read"
        )
    if not all(s.sop_class_uid for s in slices):
        raise InputError(
            f"{folder}: the source slices lack a SOPClassUID, so a DICOM SEG cannot reference "
            "them; use the NIfTI masks"
        )
    return slices


def _first_header(first: SourceSlice, source: Volume) -> Dataset:
    """The full header (no pixel data) of the first source slice, for the patient, study and
    equipment attributes the SEG copies; refused when it is no longer that slice."""
    header = read_header(first.path)
    if header is None or str(header.get("SOPInstanceUID", "")) != first.sop_instance_uid:
        raise InputError(
            f"{first.path}: the first source slice of series "
            f"{source.metadata.get('series_instance_uid', '')} is no longer there (file "
            "replaced since the CT was read); re-read the CT from its folder"
        )
    return header


def _frame_of_reference(slices: Sequence[SourceSlice], source: Volume) -> str:
    """The slices' common FrameOfReferenceUID; one derived from the SeriesInstanceUID (and a
    WARNING) when a slice has none; `InputError` when they name several."""
    series_uid = source.metadata.get("series_instance_uid", "")
    found = {s.frame_of_reference_uid for s in slices}
    if "" in found:
        # The SEG IOD requires one; derive it from the series so every SEG of this CT shares it.
        derived = generate_uid(entropy_srcs=[series_uid, "FrameOfReferenceUID"])
        logger.warning(
            "series %s has no FrameOfReferenceUID; the SEG gets %s, derived from the series",
            series_uid,
            derived,
        )
        return derived
    if len(found) > 1:
        raise InputError(
            f"series {series_uid}: its slices lie in {len(found)} frames of reference "
            "(FrameOfReferenceUID differs between slices), so one SEG cannot lie on them all; "
            "re-export the series"
        )
    return found.pop()
