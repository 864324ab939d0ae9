"""Detect truncated NIfTI files, which SimpleITK reads without complaint (missing voxels become 0),
and NaN voxels, which SimpleITK's NIfTI reader also turns into 0.

The header gives the expected data size: `vox_offset + prod(dims) * bitpix / 8` bytes. A `.nii`
must be at least that long. A `.nii.gz` is checked in O(1) by the gzip trailer (ISIZE, the
uncompressed size mod 2^32); only when that disagrees (e.g. a multi-member gzip) is the whole
stream decompressed to count its bytes.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

_CHUNK = 1 << 20


def nifti_problem(path: Path) -> str | None:
    """Why `path` (a .nii or .nii.gz) is incomplete or malformed, or None when it is whole."""
    compressed = path.name.lower().endswith(".gz")
    try:
        if compressed:
            with gzip.open(path, "rb") as f:
                header = f.read(540)
        else:
            with path.open("rb") as f:
                header = f.read(540)
    except (OSError, EOFError, zlib.error):
        return "its gzip stream is damaged"
    expected = _expected_size(header)
    if expected is None:
        return "its NIfTI header is not valid"
    if not compressed:
        size = path.stat().st_size
        return None if size >= expected else f"it holds {size} of {expected} bytes"
    with path.open("rb") as f:
        f.seek(-4, 2)
        (isize,) = struct.unpack("<I", f.read(4))
    if isize == expected % (1 << 32):
        return None
    return _count_gzip_bytes(path, expected)


def _expected_size(header: bytes) -> int | None:
    if len(header) < 348:
        return None
    for endian in ("<", ">"):
        (sizeof_hdr,) = struct.unpack(endian + "i", header[:4])
        if sizeof_hdr == 348:
            dims = struct.unpack(endian + "8h", header[40:56])
            (bitpix,) = struct.unpack(endian + "h", header[72:74])
            (vox_offset,) = struct.unpack(endian + "f", header[108:112])
            return _total(dims, bitpix, int(vox_offset))
        if sizeof_hdr == 540 and len(header) >= 540:
            (bitpix,) = struct.unpack(endian + "h", header[14:16])
            dims = struct.unpack(endian + "8q", header[16:80])
            (vox_offset,) = struct.unpack(endian + "q", header[168:176])
            return _total(dims, bitpix, vox_offset)
    return None


def _total(dims: tuple[int, ...], bitpix: int, vox_offset: int) -> int | None:
    ndim = dims[0]
    if not 1 <= ndim <= 7 or bitpix <= 0 or any(d < 1 for d in dims[1 : ndim + 1]):
        return None
    voxels = 1
    for d in dims[1 : ndim + 1]:
        voxels *= d
    return max(vox_offset, 348) + voxels * bitpix // 8


def _count_gzip_bytes(path: Path, expected: int) -> str | None:
    count = 0
    try:
        with gzip.open(path, "rb") as f:
            while chunk := f.read1(_CHUNK):  # read1: what arrived is counted before an error
                count += len(chunk)
    except (OSError, EOFError, zlib.error):
        return f"its gzip stream ends early, after {count} of {expected} bytes"
    return None if count >= expected else f"it holds {count} of {expected} bytes"


#: NIfTI datatype codes of floating-point voxels and their numpy types (float32, float64).
_FLOAT_TYPES = {16: "f4", 64: "f8"}


def nifti_non_finite(path: Path, shape: tuple[int, int, int]) -> np.ndarray | None:
    """Where the voxels of a floating-point NIfTI `path` are NaN or infinite, as a boolean
    (z, y, x) array of `shape` (the first volume of a 4D file); None when there are none or the
    voxels are integers. The file must be whole (`nifti_problem` is None)."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as f:
        header = f.read(540)
        layout = _float_layout(header)
        if layout is None:
            return None
        offset, dtype = layout
        f.seek(offset)
        count = shape[0] * shape[1] * shape[2]
        data = np.frombuffer(f.read(count * dtype.itemsize), dtype=dtype, count=count)
    bad = ~np.isfinite(data)
    return bad.reshape(shape) if bad.any() else None


def _float_layout(header: bytes) -> tuple[int, np.dtype] | None:
    """(data offset in bytes, voxel dtype) of a floating-point NIfTI header; None otherwise."""
    for endian in ("<", ">"):
        (sizeof_hdr,) = struct.unpack(endian + "i", header[:4])
        if sizeof_hdr == 348:
            (code,) = struct.unpack(endian + "h", header[70:72])
            (offset,) = struct.unpack(endian + "f", header[108:112])
        elif sizeof_hdr == 540 and len(header) >= 540:
            (code,) = struct.unpack(endian + "h", header[12:14])
            (offset,) = struct.unpack(endian + "q", header[168:176])
        else:
            continue
        if code not in _FLOAT_TYPES:
            return None
        return max(int(offset), 352), np.dtype(endian + _FLOAT_TYPES[code])
    return None
