"""Read and write 3D images: NIfTI (.nii, .nii.gz), NRRD (.nrrd, .nhdr), MetaImage (.mha, .mhd)
and DICOM series folders (read only), with their exact geometry.

Every failure a user can cause (a missing path, a file that is not an image, a truncated
.nii.gz, a 2D or 4D image) raises `InputError` with one line saying what to do.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from livermets.errors import InputError
from livermets.io.atomic import atomic_path, full_suffix
from livermets.io.nifti_check import nifti_non_finite, nifti_problem
from livermets.io.volume import Geometry, Volume
from livermets.types import PathLike

logger = logging.getLogger(__name__)

#: File suffixes read and written (DICOM series are folders, read only).
SUPPORTED_SUFFIXES: tuple[str, ...] = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")
_FORMAT_NAMES = {
    ".nii": "NIfTI",
    ".nii.gz": "NIfTI",
    ".nrrd": "NRRD",
    ".nhdr": "NRRD",
    ".mha": "MetaImage",
    ".mhd": "MetaImage",
}
_WHAT_TO_GIVE = "give a NIfTI, NRRD or MetaImage file, or a DICOM series folder"


def _check_path(path: PathLike) -> Path:
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file or folder; check the path")
    if p.is_dir():
        return p
    suffix = full_suffix(p)
    if suffix not in SUPPORTED_SUFFIXES:
        if _looks_like_dicom(p):
            raise InputError(
                f"{p} is a single DICOM file; give the folder that holds the whole series"
            )
        raise InputError(f"{p}: unsupported file type '{suffix or p.name}'; {_WHAT_TO_GIVE}")
    if p.stat().st_size == 0:
        raise InputError(f"{p} is empty (0 bytes); re-export or re-copy the image")
    return p


def _looks_like_dicom(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def _sitk_reader(path: Path) -> sitk.ImageFileReader:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise InputError(
            f"{path} is not a readable {_FORMAT_NAMES[full_suffix(path)]} image "
            f"(corrupt, truncated or another format); re-export it"
        ) from exc
    dim = reader.GetDimension()
    size = list(reader.GetSize())
    if dim == 4 and size[3] == 1:
        return reader  # a 4D file with one time point is a 3D volume
    if dim != 3:
        kind = "a 2D image" if dim == 2 else f"a {dim}D image (time series or channels)"
        raise InputError(
            f"{path} is {kind} of size {size}; livermets needs one 3D CT volume"
        )
    if reader.GetNumberOfComponents() != 1:
        raise InputError(
            f"{path} has {reader.GetNumberOfComponents()} values per voxel (colour or vector); "
            f"livermets needs one grey value per voxel"
        )
    return reader


def read_image(path: PathLike, *, series_uid: str | None = None) -> Volume:
    """Read a 3D image file or a DICOM series folder into a `Volume` (values as stored; HU for CT).

    `series_uid` chooses one series when a DICOM folder holds several (ignored for files).
    Metadata: `format` (nifti, nrrd, metaimage or dicom) and `source` (the path).
    """
    p = _check_path(path)
    if p.is_dir():
        from livermets.io.dicom import read_dicom_series

        return read_dicom_series(p, series_uid=series_uid)
    reader = _sitk_reader(p)
    if full_suffix(p) in (".nii", ".nii.gz"):
        problem = nifti_problem(p)
        if problem is not None:
            raise InputError(f"{p} is truncated or corrupt ({problem}); re-export or re-copy it")
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise InputError(
            f"{p}: the image data cannot be read (the file is truncated or corrupt); re-export it"
        ) from exc
    if image.GetDimension() == 4:
        image = image[:, :, :, 0]
    fmt = _FORMAT_NAMES[full_suffix(p)].lower()
    volume = Volume.from_sitk(image, {"format": fmt, "source": str(p)})
    if fmt == "nifti" and np.issubdtype(volume.array.dtype, np.floating):
        non_finite = nifti_non_finite(p, volume.shape)
        if non_finite is not None:  # SimpleITK read them as 0: give them back as NaN
            volume = volume.with_array(np.where(non_finite, np.nan, volume.array)
                                       .astype(volume.array.dtype))
    logger.debug("read %s: shape %s spacing %s", p, volume.shape, volume.spacing)
    return volume


def read_geometry(path: PathLike, *, series_uid: str | None = None) -> Geometry:
    """The grid of an image file or DICOM series folder, from its header only (no voxel data)."""
    p = _check_path(path)
    if p.is_dir():
        from livermets.io.dicom import read_dicom_geometry

        return read_dicom_geometry(p, series_uid=series_uid)
    reader = _sitk_reader(p)
    sx, sy, sz = list(reader.GetSpacing())[:3]
    nx, ny, nz = list(reader.GetSize())[:3]
    direction = reader.GetDirection()
    if len(direction) == 16:  # 4D header with one time point: keep the spatial 3x3 block
        direction = tuple(direction[r * 4 + c] for r in range(3) for c in range(3))
    return Geometry((nz, ny, nx), (sz, sy, sx), tuple(reader.GetOrigin())[:3],
                    direction)


def write_image(volume: Volume, path: PathLike, *, compress: bool = True) -> Path:
    """Write `volume` to a NIfTI, NRRD or MetaImage file with its exact geometry, atomically.

    The format follows the suffix. Boolean arrays are written as uint8 and float16 as float32.
    Returns the written path.
    """
    target = Path(path)
    suffix = full_suffix(target)
    if suffix not in SUPPORTED_SUFFIXES:
        raise InputError(
            f"{target}: cannot write '{suffix or target.name}'; use one of "
            f"{', '.join(SUPPORTED_SUFFIXES)}"
        )
    array = volume.array
    if array.dtype == np.float16:
        volume = volume.with_array(array.astype(np.float32))
    image = volume.to_sitk()
    if suffix in (".mhd", ".nhdr"):
        _write_with_sidecar(image, target, compress)
    else:
        with atomic_path(target) as tmp:
            sitk.WriteImage(image, str(tmp), useCompression=compress)
    return target


def _write_with_sidecar(image: sitk.Image, target: Path, compress: bool) -> None:
    """Write a header + data-file format (.mhd/.raw, .nhdr/.raw) with both files renamed in place.

    The header names its data file, so both are written under their final names in a
    temporary folder beside the target, then moved: data first, header last. A data file of
    that name beside a target that does not exist yet belongs to another image: `InputError`,
    nothing replaced.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        sitk.WriteImage(image, str(tmp_dir / target.name), useCompression=compress)
        header = tmp_dir / target.name
        for written in tmp_dir.iterdir():
            beside = target.parent / written.name
            if written != header and beside.exists() and not target.exists():
                raise InputError(f"writing {target} would replace {beside}, which belongs to "
                                 "another image; choose another name")
        for written in sorted(tmp_dir.iterdir(), key=lambda q: q == header):
            written.replace(target.parent / written.name)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


#: Voxel spacing a CT can have (mm): finer or coarser is a broken header, not a scan.
CT_SPACING_MM = (0.05, 30.0)
#: The lowest HU a CT must reach somewhere (air is -1000 HU): an image that never goes below
#: it is not a CT in HU (an MR, or raw stored values without the rescale to HU).
CT_AIR_BELOW_HU = -500.0
#: Values outside this range are not HU (the largest metal implants reach about 30000).
CT_RANGE_HU = (-4000.0, 40000.0)


def check_ct(volume: Volume, what: str) -> None:
    """`InputError` (one line naming `what`, e.g. the CT's path) when `volume` cannot be a CT
    to segment: a modality other than CT (DICOM), a single slice (a 2D image, as a one-slice
    DICOM series is refused), slices under 16 pixels a side, a spacing outside
    `CT_SPACING_MM`, NaN / infinite voxels, or values that are not HU (no air below
    `CT_AIR_BELOW_HU`, or outside `CT_RANGE_HU`)."""
    modality = volume.metadata.get("modality")
    if modality and modality != "CT":
        raise InputError(f"{what} is a {modality} series (DICOM Modality); livermets segments "
                         "CT: give the CT series")
    if volume.shape[0] < 2:
        raise InputError(f"{what} has a single slice (a 2D image); livermets needs a 3D CT "
                         "volume: give all the slices of the series")
    if min(volume.shape[1:]) < 16:
        raise InputError(f"{what} is {volume.shape} (z, y, x): too small for a CT")
    low, high = CT_SPACING_MM
    if not all(low <= s <= high for s in volume.spacing):
        spacing = ", ".join(f"{s:g}" for s in volume.spacing)
        raise InputError(f"{what} has a voxel spacing of ({spacing}) mm (z, y, x), outside "
                         f"[{low:g}, {high:g}] mm; fix the image header's spacing")
    array = volume.array
    if np.issubdtype(array.dtype, np.floating):
        bad = ~np.isfinite(array)
        if bad.any():
            slices = np.flatnonzero(bad.any(axis=(1, 2)))
            raise InputError(f"{what} holds {int(bad.sum())} NaN or infinite voxels on "
                             f"{len(slices)} slice(s) (first: slice {int(slices[0])}); "
                             "re-export the CT with every voxel in HU")
    low, high = float(array.min()), float(array.max())
    if low > CT_AIR_BELOW_HU:
        raise InputError(f"{what}: its lowest value is {low:g}, but a CT in HU has air near "
                         "-1000; give a CT stored in HU (with RescaleSlope/Intercept applied)")
    if low < CT_RANGE_HU[0] or high > CT_RANGE_HU[1]:
        raise InputError(f"{what}: its values run from {low:g} to {high:g}, outside the HU "
                         f"range [{CT_RANGE_HU[0]:g}, {CT_RANGE_HU[1]:g}]; give a CT in HU")
