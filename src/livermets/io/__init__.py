"""The only code that touches image files: `Volume`, image and DICOM readers and writers,
DICOM Segmentation objects, and the cohort manifest."""

from livermets.io.dicom import list_dicom_series, read_dicom_geometry, read_dicom_series
from livermets.io.dicom_seg import Segment, SegmentSpec, read_dicom_seg, write_dicom_seg
from livermets.io.image import SUPPORTED_SUFFIXES, read_geometry, read_image, write_image
from livermets.io.volume import Geometry, Volume

__all__ = [
    "SUPPORTED_SUFFIXES",
    "Geometry",
    "Segment",
    "SegmentSpec",
    "Volume",
    "list_dicom_series",
    "read_dicom_geometry",
    "read_dicom_seg",
    "read_dicom_series",
    "read_geometry",
    "read_image",
    "write_dicom_seg",
    "write_image",
]
