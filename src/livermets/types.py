"""Shared type aliases used across the package."""

from __future__ import annotations

import os
from typing import TypeAlias

PathLike: TypeAlias = str | os.PathLike[str]
"""A file-system path given by a user: `str` or `pathlib.Path`."""

Spacing: TypeAlias = tuple[float, float, float]
"""Voxel spacing in mm, in array order (z, y, x)."""

Point: TypeAlias = tuple[float, float, float]
"""A physical point in mm, in patient (LPS) order (x, y, z), as ITK and DICOM give it."""

Direction: TypeAlias = tuple[float, float, float, float, float, float, float, float, float]
"""ITK direction cosines, row-major 3x3; column k is the LPS direction of index axis k (x, y, z)."""
