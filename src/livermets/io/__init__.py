"""The only code that touches image files: `Volume`, image and DICOM readers and writers,
DICOM Segmentation objects, and the cohort manifest."""

from livermets.io.image import SUPPORTED_SUFFIXES, read_geometry, read_image, write_image
from livermets.io.volume import Geometry, Volume

__all__ = [
    "SUPPORTED_SUFFIXES",
    "Geometry",
    "Volume",
    "read_geometry",
    "read_image",
    "write_image",
]
