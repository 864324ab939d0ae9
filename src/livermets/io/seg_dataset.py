"""The dataset of a BINARY DICOM Segmentation (SEG) on a CT series, built with pydicom.

`segmentation_dataset` builds, element for element, what highdicom's `Segmentation` (0.28)
builds from the same source headers and masks with the arguments livermets used to pass it
(tests/io/test_seg_dataset.py builds both and compares them), except:

- the fresh UIDs and times (SOPInstanceUID, SeriesInstanceUID, DimensionOrganizationUID,
  InstanceCreation/Content date and time) and the file meta's implementation class and version
  (pydicom's);
- ContributingEquipmentSequence holds only the source's acquisition equipment: highdicom adds
  an item naming itself ("Software library used to create this instance"), which would be
  false here; the SEG's creator is its General Equipment (Manufacturer "livermets", ...);
- an odd-length PixelData is padded with 00H (highdicom appends the character "0"); frames of
  512 x 512 pixels never need it.

Where highdicom raises on unusual source headers (a type 2 attribute missing, an invalid
PatientSex, orientations differing in the last digits between slices), this module writes
the attribute empty, copies the value, or takes the first slice's orientation.

What the SEG holds:

- patient, study and specimen: every attribute at the root of the Patient and Study
  information entities' modules and of the Specimen module that the first source slice has,
  copied as is (`SOURCE_KEYWORDS`); the type 2 ones it lacks are written empty;
- frame of reference: the given FrameOfReferenceUID, the source's PositionReferenceIndicator;
- references: every source slice in SourceImageSequence and ReferencedSeriesSequence;
- frames: one per segment and slice where that segment has foreground, segment by segment; the
  slices ordered along the normal column cosine x row cosine (for an axial CT from the head
  down: the volume's z order reversed). When every mask is empty, every slice of every segment
  (a SEG needs frames). Each frame: DimensionIndexValues (segment number, 1-based rank of its
  slice among the slices with a frame), its slice's ImagePositionPatient as written in the
  source file, and the source slice it derives from;
- shared: the first slice's ImageOrientationPatient, PixelSpacing, SliceThickness and
  SpacingBetweenSlices (when the source lacks it: the mean gap along the normal when the
  positions are evenly spaced within 1%, else none); with one segment also its
  SegmentIdentificationSequence, and DimensionOrganizationType "3D" when its frames' slices are
  evenly spaced;
- pixel data: the frames' pixels (row by row) packed into bits, 8 to a byte, first pixel in the
  lowest bit, frames one after the other without padding between them (PS3.5 8.1.1).
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid
from pydicom.valuerep import DA, DS, DT, TM, format_number_as_ds

from livermets.io.dicom import SourceSlice

SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"


@dataclass(frozen=True)
class Code:
    """A coded concept (DICOM's Code Sequence Macro): `value` in the coding scheme
    `scheme_designator` (e.g. "SCT", "DCM"), its human-readable `meaning`.

    The fields of `pydicom.sr.coding.Code`, which would import pydicom's concept tables (about
    0.07 s of every `predict`) for four codes.
    """

    value: str
    scheme_designator: str
    meaning: str
    scheme_version: str | None = None

#: Root attributes of the Patient, Clinical Trial Subject, General Study, Patient Study,
#: Clinical Trial Study and Specimen modules (DICOM PS3.3; the same for the CT, MR, PET,
#: secondary capture and enhanced CT image IODs), copied from the first source slice.
SOURCE_KEYWORDS: tuple[str, ...] = (
    # patient
    "ReferencedPatientSequence", "PatientName", "PatientID", "IssuerOfPatientID",
    "TypeOfPatientID", "IssuerOfPatientIDQualifiersSequence",
    "SourcePatientGroupIdentificationSequence", "GroupOfPatientsIdentificationSequence",
    "PatientBirthDate", "PatientBirthTime", "PatientBirthDateInAlternativeCalendar",
    "PatientDeathDateInAlternativeCalendar", "PatientAlternativeCalendar", "PatientSex",
    "QualityControlSubject", "StrainDescription", "StrainNomenclature", "StrainStockSequence",
    "StrainAdditionalInformation", "StrainCodeSequence", "GeneticModificationsSequence",
    "OtherPatientNames", "OtherPatientIDsSequence", "ReferencedPatientPhotoSequence",
    "EthnicGroupCodeSequence", "PatientSpeciesDescription", "PatientSpeciesCodeSequence",
    "PatientBreedDescription", "PatientBreedCodeSequence", "BreedRegistrationSequence",
    "ResponsiblePerson", "ResponsiblePersonRole", "ResponsibleOrganization", "PatientComments",
    "PatientIdentityRemoved", "DeidentificationMethod", "DeidentificationMethodCodeSequence",
    # clinical trial subject
    "ClinicalTrialSponsorName", "ClinicalTrialProtocolID", "ClinicalTrialProtocolName",
    "IssuerOfClinicalTrialProtocolID", "OtherClinicalTrialProtocolIDsSequence",
    "ClinicalTrialSiteID", "ClinicalTrialSiteName", "IssuerOfClinicalTrialSiteID",
    "ClinicalTrialSubjectID", "IssuerOfClinicalTrialSubjectID", "ClinicalTrialSubjectReadingID",
    "IssuerOfClinicalTrialSubjectReadingID", "ClinicalTrialProtocolEthicsCommitteeName",
    "ClinicalTrialProtocolEthicsCommitteeApprovalNumber",
    # general study
    "StudyDate", "StudyTime", "AccessionNumber", "IssuerOfAccessionNumberSequence",
    "ReferringPhysicianName", "ReferringPhysicianIdentificationSequence",
    "ConsultingPhysicianName", "ConsultingPhysicianIdentificationSequence", "StudyDescription",
    "ProcedureCodeSequence", "PhysiciansOfRecord", "PhysiciansOfRecordIdentificationSequence",
    "NameOfPhysiciansReadingStudy", "PhysiciansReadingStudyIdentificationSequence",
    "ReferencedStudySequence", "StudyInstanceUID", "StudyID", "RequestingService",
    "RequestingServiceCodeSequence", "ReasonForPerformedProcedureCodeSequence",
    # patient study
    "AdmittingDiagnosesDescription", "AdmittingDiagnosesCodeSequence", "PatientAge", "PatientSize",
    "PatientSizeCodeSequence", "PatientBodyMassIndex", "MeasuredAPDimension",
    "MeasuredLateralDimension", "PatientWeight", "MedicalAlerts", "Allergies", "Occupation",
    "SmokingStatus", "AdditionalPatientHistory", "PregnancyStatus", "LastMenstrualDate",
    "PatientSexNeutered", "ReasonForVisit", "ReasonForVisitCodeSequence", "AdmissionID",
    "IssuerOfAdmissionIDSequence", "ServiceEpisodeID", "ServiceEpisodeDescription",
    "IssuerOfServiceEpisodeIDSequence", "PatientState",
    # clinical trial study
    "ClinicalTrialTimePointID", "ClinicalTrialTimePointDescription",
    "LongitudinalTemporalOffsetFromEvent", "LongitudinalTemporalEventType",
    "ClinicalTrialTimePointTypeCodeSequence", "IssuerOfClinicalTrialTimePointID",
    "ConsentForClinicalTrialUseSequence",
    # specimen
    "ContainerIdentifier", "IssuerOfTheContainerIdentifierSequence",
    "AlternateContainerIdentifierSequence", "ContainerTypeCodeSequence", "ContainerDescription",
    "ContainerComponentSequence", "SpecimenDescriptionSequence",
)  # fmt: skip

#: Type 2 patient and study attributes, written empty when the source lacks them.
_EMPTY_UNLESS_COPIED = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID",
    "StudyDate", "StudyTime", "ReferringPhysicianName",
)  # fmt: skip

#: The source's acquisition equipment attributes copied into ContributingEquipmentSequence,
#: with the longest value their VR allows (LO 64, ST 1024, SH 16 characters).
_EQUIPMENT_LENGTHS = {
    "Manufacturer": 64, "ManufacturerModelName": 64, "InstitutionName": 64,
    "InstitutionalDepartmentName": 64, "InstitutionAddress": 1024, "StationName": 16,
    "DeviceSerialNumber": 64, "SoftwareVersions": 64,
}  # fmt: skip

ACQUISITION_EQUIPMENT = Code("109101", "DCM", "Acquisition Equipment")
SOURCE_IMAGE_PURPOSE = Code("121322", "DCM", "Source image for image processing operation")
SEGMENTATION_DERIVATION = Code("113076", "DCM", "Segmentation")
#: Longest CodeValue (SH); longer codes go to LongCodeValue or URNCodeValue.
_SHORT_CODE_LENGTH = 16
#: Slices count as evenly spaced when every gap is within 1% of the mean gap, and as stacked
#: along their normal when each lies within 1e-3 (cosine) of it, seen from the first.
_SPACING_TOLERANCE = 0.01
_PERPENDICULAR_TOLERANCE = 1e-3


class SegmentDescription(Protocol):
    """What SegmentSequence says about one segment (`dicom_seg.SegmentSpec` is one)."""

    @property
    def label(self) -> str: ...

    @property
    def category(self) -> Code: ...

    @property
    def property_type(self) -> Code: ...

    @property
    def anatomic_region(self) -> Code | None: ...


@dataclass(frozen=True)
class SegSeries:
    """What the SEG says of itself: its series, the software that made it (`software`:
    Manufacturer, ManufacturerModelName and algorithm name; `version`: SoftwareVersions and
    AlgorithmVersion; `algorithm_family`: AlgorithmFamilyCodeSequence), ContentLabel (a CS)
    and ContentDescription (at most 64 characters)."""

    series_description: str
    series_number: int
    software: str
    version: str
    algorithm_family: Code
    content_label: str
    content_description: str
    device_serial_number: str = "0"


@dataclass(frozen=True)
class _Frame:
    """One frame: its 1-based segment number, its slice (z index of the volume) and the
    slice's 1-based rank among the slices with frames (its DimensionIndexValues)."""

    segment: int
    z: int
    rank: int


def segmentation_dataset(
    first: Dataset,
    slices: Sequence[SourceSlice],
    frame_of_reference_uid: str,
    segments: Sequence[SegmentDescription],
    masks: Sequence[npt.NDArray[Any]],
    series: SegSeries,
) -> Dataset:
    """The BINARY SEG of `masks` (one (z, y, x) 0/1 array per segment, numbered 1, 2, ... in
    order) on the source `slices` (in the volume's z order: slice k is mask slice k), with
    `first` the full header (no pixels) of slices[0].

    The caller checks what the masks and slices must satisfy (shape, 0/1 values, headers
    unchanged since read); see the module docstring for what the SEG holds.
    """
    nonempty = np.array([mask.any(axis=(1, 2)) for mask in masks], dtype=bool)  # (segments, z)
    frames = _frame_plan(nonempty, _slice_order(first, slices))
    ds = _new_dataset(generate_uid())
    _add_patient_and_study(ds, first)
    _add_series_and_equipment(ds, first, series)
    ds.FrameOfReferenceUID = frame_of_reference_uid
    ds.PositionReferenceIndicator = first.get("PositionReferenceIndicator")
    _add_image_pixel(ds, first, len(frames), masks[0].shape[1:])
    _add_segmentation(ds, segments, masks, nonempty, series)
    _add_references(ds, first, slices)
    _add_dimensions(ds, first, slices, frames, len(segments))
    ds.SharedFunctionalGroupsSequence = [_shared_item(first, slices, len(segments))]
    ds.PerFrameFunctionalGroupsSequence = _per_frame_items(slices, frames, len(segments))
    ds.PixelData = _pixel_data(masks, frames)
    return ds


def _new_dataset(sop_instance_uid: str) -> Dataset:
    """SOP common and file meta of a new SEG instance, created now, text in UTF-8."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = UID(SEGMENTATION_STORAGE)
    ds.file_meta.MediaStorageSOPInstanceUID = UID(sop_instance_uid)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SpecificCharacterSet = "ISO_IR 192"  # UTF-8: holds any text pydicom decoded
    ds.SOPClassUID = SEGMENTATION_STORAGE
    ds.SOPInstanceUID = sop_instance_uid
    ds.InstanceNumber = 1
    now = datetime.datetime.now()
    ds.InstanceCreationDate = ds.ContentDate = DA(now.date())
    ds.InstanceCreationTime = ds.ContentTime = TM(now.time())
    return ds


def _add_patient_and_study(ds: Dataset, first: Dataset) -> None:
    """The source's patient, study and specimen attributes (`SOURCE_KEYWORDS`), as is."""
    for keyword in _EMPTY_UNLESS_COPIED:
        setattr(ds, keyword, None)
    ds.StudyInstanceUID = str(first.get("StudyInstanceUID", ""))
    for tag in _SOURCE_TAGS:
        if tag in first:
            ds.add(first[tag])


def _add_series_and_equipment(ds: Dataset, first: Dataset, series: SegSeries) -> None:
    """General Series and General Equipment of the SEG, and the source's scanner as
    contributing equipment (when it names one)."""
    ds.Modality = "SEG"
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = series.series_number
    ds.SeriesDescription = series.series_description
    ds.Manufacturer = series.software
    ds.ManufacturerModelName = series.software
    ds.DeviceSerialNumber = series.device_serial_number
    ds.SoftwareVersions = series.version
    equipment = _acquisition_equipment(first)
    if equipment is not None:
        ds.ContributingEquipmentSequence = [equipment]


def _acquisition_equipment(first: Dataset) -> Dataset | None:
    """The ContributingEquipmentSequence item of the source's acquisition equipment; None when
    the source names no Manufacturer, or a value does not fit its VR (no item then, as with
    highdicom)."""
    if not first.get("Manufacturer"):
        return None
    item = Dataset()
    for keyword, longest in _EQUIPMENT_LENGTHS.items():
        value = first.get(keyword)
        if value is None:
            continue
        values = [value] if isinstance(value, str) else list(value)
        if not values or not all(_fits(v, longest) for v in values):
            return None
        setattr(item, keyword, value if isinstance(value, str) else values)
    when = first.get("AcquisitionDateTime")
    if when is not None:
        try:
            item.ContributionDateTime = DT(when)
        except ValueError:
            return None
    item.ContributionDescription = "Acquisition equipment of the source image(s)"
    item.PurposeOfReferenceCodeSequence = [_code_item(ACQUISITION_EQUIPMENT)]
    return item


def _fits(value: Any, longest: int) -> bool:
    """Whether `value` is one text value of at most `longest` characters (no backslash)."""
    return isinstance(value, str) and len(value) <= longest and "\\" not in value


def _add_image_pixel(
    ds: Dataset, first: Dataset, number_of_frames: int, frame_shape: tuple[int, ...]
) -> None:
    """Image Pixel, General Image and Multi-frame attributes of 1-bit frames (rows, columns)."""
    ds.ImageType = ["DERIVED", "PRIMARY"]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = frame_shape
    ds.NumberOfFrames = number_of_frames
    ds.BitsAllocated = 1
    ds.BitsStored = 1
    ds.HighBit = 0
    ds.PixelRepresentation = 0
    ds.PresentationLUTShape = "IDENTITY"
    ds.LossyImageCompression = first.get("LossyImageCompression", "00")
    if ds.LossyImageCompression == "01":
        for keyword in ("LossyImageCompressionRatio", "LossyImageCompressionMethod"):
            if keyword in first:
                setattr(ds, keyword, first.get(keyword))


def _add_segmentation(
    ds: Dataset,
    segments: Sequence[SegmentDescription],
    masks: Sequence[npt.NDArray[Any]],
    nonempty: npt.NDArray[np.bool_],
    series: SegSeries,
) -> None:
    """Segmentation Image module: type, content, SegmentSequence and SegmentsOverlap."""
    ds.SegmentationType = "BINARY"
    ds.ContentLabel = series.content_label
    ds.ContentDescription = series.content_description
    ds.SegmentSequence = [
        _segment_item(number, segment, series) for number, segment in enumerate(segments, start=1)
    ]
    ds.SegmentsOverlap = "YES" if segments_overlap(masks, nonempty) else "NO"


def _segment_item(number: int, segment: SegmentDescription, series: SegSeries) -> Dataset:
    """The SegmentSequence item of segment `number`, made by an AUTOMATIC algorithm."""
    algorithm = Dataset()
    algorithm.AlgorithmName = series.software
    algorithm.AlgorithmVersion = series.version
    algorithm.AlgorithmFamilyCodeSequence = [_code_item(series.algorithm_family)]
    item = Dataset()
    item.SegmentNumber = number
    item.SegmentLabel = segment.label
    item.SegmentedPropertyCategoryCodeSequence = [_code_item(segment.category)]
    item.SegmentedPropertyTypeCodeSequence = [_code_item(segment.property_type)]
    item.SegmentAlgorithmType = "AUTOMATIC"
    item.SegmentAlgorithmName = series.software
    item.SegmentationAlgorithmIdentificationSequence = [algorithm]
    if segment.anatomic_region is not None:
        item.AnatomicRegionSequence = [_code_item(segment.anatomic_region)]
    return item


def _code_item(code: Code) -> Dataset:
    """A code sequence item (Code Sequence Macro) of `code`."""
    item = Dataset()
    if len(code.value) <= _SHORT_CODE_LENGTH:
        item.CodeValue = code.value
    elif code.value.startswith("urn") or "://" in code.value:
        item.URNCodeValue = code.value
    else:
        item.LongCodeValue = code.value
    item.CodeMeaning = code.meaning
    item.CodingSchemeDesignator = code.scheme_designator
    if code.scheme_version is not None:
        item.CodingSchemeVersion = code.scheme_version
    return item


def segments_overlap(masks: Sequence[npt.NDArray[Any]], nonempty: npt.NDArray[np.bool_]) -> bool:
    """Whether two of the 0/1 masks (z, y, x) share a voxel; `nonempty` (segments, z) says
    which slices of each hold foreground: only slices where both masks have some are read."""
    for a in range(len(masks)):
        for b in range(a + 1, len(masks)):
            both = np.flatnonzero(nonempty[a] & nonempty[b])
            if both.size and np.logical_and(masks[a][both], masks[b][both]).any():
                return True
    return False


def _add_references(ds: Dataset, first: Dataset, slices: Sequence[SourceSlice]) -> None:
    """Every source slice in SourceImageSequence and in the Common Instance Reference."""
    items = [_instance_item(s) for s in slices]
    ds.SourceImageSequence = items
    series = Dataset()
    series.SeriesInstanceUID = first.SeriesInstanceUID
    series.ReferencedInstanceSequence = items
    ds.ReferencedSeriesSequence = [series]


def _instance_item(s: SourceSlice) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = s.sop_class_uid
    item.ReferencedSOPInstanceUID = s.sop_instance_uid
    return item


def _add_dimensions(
    ds: Dataset,
    first: Dataset,
    slices: Sequence[SourceSlice],
    frames: Sequence[_Frame],
    number_of_segments: int,
) -> None:
    """Multi-frame Dimension module: frames indexed by segment number, then plane position;
    DimensionOrganizationType "3D" for one segment whose frames' slices are evenly spaced."""
    uid = generate_uid()
    organization = Dataset()
    organization.DimensionOrganizationUID = uid
    ds.DimensionOrganizationSequence = [organization]
    ds.DimensionIndexSequence = [
        _dimension_index(
            uid,
            "ReferencedSegmentNumber",
            "SegmentIdentificationSequence",
            "Referenced Segment Number",
        ),
        _dimension_index(
            uid, "ImagePositionPatient", "PlanePositionSequence", "Image Position Patient"
        ),
    ]
    planes = sorted({frame.z for frame in frames})
    if number_of_segments == 1 and len(planes) > 1:
        spacing = _stack_spacing(_positions(slices)[planes], _normal(first), sort=False)
        if spacing is not None and spacing > 0.0:
            ds.DimensionOrganizationType = "3D"


def _dimension_index(uid: str, pointer: str, group: str, label: str) -> Dataset:
    item = Dataset()
    item.DimensionOrganizationUID = uid
    item.DimensionIndexPointer = tag_for_keyword(pointer)
    item.FunctionalGroupPointer = tag_for_keyword(group)
    item.DimensionDescriptionLabel = label
    return item


def _shared_item(first: Dataset, slices: Sequence[SourceSlice], number_of_segments: int) -> Dataset:
    """The SharedFunctionalGroupsSequence item: orientation, pixel measures and, for a single
    segment, its identification."""
    orientation = Dataset()
    orientation.ImageOrientationPatient = _ds_values(first.ImageOrientationPatient)
    measures = Dataset()
    measures.PixelSpacing = _ds_values(first.PixelSpacing)
    if first.get("SliceThickness") is not None:
        measures.SliceThickness = DS(first.SliceThickness, auto_format=True)
    if first.get("SpacingBetweenSlices") is not None:
        measures.SpacingBetweenSlices = DS(first.SpacingBetweenSlices, auto_format=True)
    else:
        spacing = _stack_spacing(_positions(slices), _normal(first), sort=True)
        if spacing is not None:
            measures.SpacingBetweenSlices = format_number_as_ds(spacing)
    item = Dataset()
    item.PlaneOrientationSequence = [orientation]
    item.PixelMeasuresSequence = [measures]
    if number_of_segments == 1:
        item.SegmentIdentificationSequence = [_segment_identification(1)]
    return item


def _ds_values(values: Sequence[Any]) -> list[Any]:
    """DS values as pydicom writes them auto-formatted: as in the source when valid, else
    re-formatted to at most 16 characters."""
    return [DS(v, auto_format=True) for v in values]


def _segment_identification(number: int) -> Dataset:
    item = Dataset()
    item.ReferencedSegmentNumber = number
    return item


def _per_frame_items(
    slices: Sequence[SourceSlice], frames: Sequence[_Frame], number_of_segments: int
) -> list[Dataset]:
    """PerFrameFunctionalGroupsSequence: each frame's index, position, source and (with
    several segments) segment. Items that are the same for several frames (a slice's position
    and source, the codes) are one object, written once per frame."""
    purpose = _code_item(SOURCE_IMAGE_PURPOSE)
    derivation_code = _code_item(SEGMENTATION_DERIVATION)
    positions: dict[int, Dataset] = {}
    sources: dict[int, Dataset] = {}
    for z in {frame.z for frame in frames}:
        positions[z] = Dataset()
        positions[z].ImagePositionPatient = _ds_values(slices[z].position)
        sources[z] = _instance_item(slices[z])
        sources[z].PurposeOfReferenceCodeSequence = [purpose]
        sources[z].SpatialLocationsPreserved = "YES"
    items = []
    for frame in frames:
        content = Dataset()
        content.DimensionIndexValues = [frame.segment, frame.rank]
        derivation = Dataset()
        derivation.DerivationCodeSequence = [derivation_code]
        derivation.SourceImageSequence = [sources[frame.z]]
        item = Dataset()
        item.FrameContentSequence = [content]
        item.PlanePositionSequence = [positions[frame.z]]
        item.DerivationImageSequence = [derivation]
        if number_of_segments > 1:
            item.SegmentIdentificationSequence = [_segment_identification(frame.segment)]
        items.append(item)
    return items


def _pixel_data(masks: Sequence[npt.NDArray[Any]], frames: Sequence[_Frame]) -> bytes:
    """The frames' 0/1 pixels packed 8 to a byte (first pixel in the lowest bit), frames
    back to back, padded with 00H to an even length."""
    rows, columns = masks[0].shape[1:]
    stack = np.empty((len(frames), rows, columns), dtype=np.uint8)
    for k, frame in enumerate(frames):
        stack[k] = masks[frame.segment - 1][frame.z]
    packed = np.packbits(stack, axis=None, bitorder="little").tobytes()
    return packed + b"\x00" if len(packed) % 2 else packed


def _frame_plan(nonempty: npt.NDArray[np.bool_], order: Sequence[int]) -> list[_Frame]:
    """The frames, segment by segment, each segment's slices in `order` (z indices): the
    (segment, slice) pairs with foreground, or all of them when no mask has any."""
    keep_empty = not nonempty.any()
    planes = [z for z in order if keep_empty or nonempty[:, z].any()]
    return [
        _Frame(segment + 1, z, rank)
        for segment in range(nonempty.shape[0])
        for rank, z in enumerate(planes, start=1)
        if keep_empty or nonempty[segment, z]
    ]


def _slice_order(first: Dataset, slices: Sequence[SourceSlice]) -> list[int]:
    """The slices' z indices sorted by position along the normal column x row cosine."""
    distances = _positions(slices) @ _normal(first)
    return [int(z) for z in np.argsort(distances, kind="stable")]


def _positions(slices: Sequence[SourceSlice]) -> npt.NDArray[np.float64]:
    """ImagePositionPatient of each slice (n, 3), LPS mm."""
    return np.array([[float(v) for v in s.position] for s in slices], dtype=np.float64)


def _normal(first: Dataset) -> npt.NDArray[np.float64]:
    """Column cosine x row cosine of the first slice's ImageOrientationPatient (not
    normalised): the direction frames are sorted along."""
    cosines = np.array([float(v) for v in _ds_values(first.ImageOrientationPatient)])
    return np.cross(cosines[3:], cosines[:3])


def _stack_spacing(
    positions: npt.NDArray[np.float64], normal: npt.NDArray[np.float64], *, sort: bool
) -> float | None:
    """The slice spacing (mm) when `positions` (n, 3) form an evenly spaced stack along
    `normal`, else None (also for repeated positions); 1.0 for a single position.

    The distinct positions are taken in lexicographic (x, y, z) order, then sorted along the
    normal when `sort`. Even: every gap within 1% of the mean gap (first to last / (n - 1));
    stacked: each position seen from the first lies within 1e-3 of the normal's direction.
    """
    unique = np.unique(positions, axis=0)
    if len(unique) < len(positions):
        return None
    if len(unique) == 1:
        return 1.0
    distances = (normal[None] @ unique.T).squeeze(0)
    order = np.argsort(distances) if sort else np.arange(len(unique))
    ordered = distances[order]
    spacing = (ordered[-1] - ordered[0]) / (len(ordered) - 1)
    even = np.isclose(np.diff(ordered), spacing, rtol=_SPACING_TOLERANCE, atol=0.0).all()
    spans = unique[order[1:]] - unique[order[0]]
    cosines = (spans / np.linalg.norm(spans, axis=1)[:, None]) @ normal
    stacked = np.all(
        np.minimum(np.abs(cosines - 1.0), np.abs(cosines + 1.0)) < _PERPENDICULAR_TOLERANCE
    )
    return abs(float(spacing)) if even and stacked else None


def _tag(keyword: str) -> int:
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(f"pydicom does not know the DICOM keyword {keyword}")
    return tag


_SOURCE_TAGS = tuple(_tag(keyword) for keyword in SOURCE_KEYWORDS)
