"""`write_dicom_seg` (pydicom, `livermets.io.seg_dataset`) against highdicom's `Segmentation`.

Each case writes the SEG both ways from the same masks on a real DICOM CT: ours with
`write_dicom_seg`, the reference with highdicom and the arguments `write_dicom_seg` passed it
until it was replaced (`_highdicom_seg`: headers read again, frame of reference derived for
IRCADb). The two files are read back and compared element by element, recursively through
sequences, on the bytes as written (VR and value), pixel data included; both must hold the same
tags. Not compared (`GENERATED`): the values each write generates afresh (UIDs, the time of
writing) and the file meta's implementation class and version. Taken out of the reference first:
the ContributingEquipmentSequence item in which highdicom names itself. Then both files are read
back with highdicom (`segread`) and with `read_dicom_seg`: the masks come back voxel for voxel.
"""

from __future__ import annotations

import re
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import pydicom
import pytest
from highdicom._standard_utils import (
    get_iod_module_map,
    get_module_attribute_map,
    get_sop_class_iod_map,
)
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.sr.coding import Code as PydicomCode

import livermets
from livermets.errors import InputError
from livermets.io import Volume, read_image
from livermets.io.dicom import find_dicom_series, referenced_sop_instance_uids
from livermets.io.dicom_seg import (
    ARTIFICIAL_INTELLIGENCE,
    SegmentSpec,
    liver_segment,
    metastases_segment,
    read_dicom_seg,
    write_dicom_seg,
)
from livermets.io.seg_dataset import SOURCE_KEYWORDS, Code
from tests.conftest import ellipsoid, shared_path

pytestmark = pytest.mark.shared_data

#: Paths (sequence keywords, then the element's) whose values each write generates afresh, and
#: the file meta's implementation identity (highdicom's in the reference, pydicom's in ours)
#: with the group length that follows from its length. Present in both, values not compared.
GENERATED = {
    ("SOPInstanceUID",),
    ("SeriesInstanceUID",),
    ("InstanceCreationDate",),
    ("InstanceCreationTime",),
    ("ContentDate",),
    ("ContentTime",),
    ("DimensionOrganizationSequence", "DimensionOrganizationUID"),
    ("DimensionIndexSequence", "DimensionOrganizationUID"),
    ("file meta", "MediaStorageSOPInstanceUID"),
    ("file meta", "ImplementationClassUID"),
    ("file meta", "ImplementationVersionName"),
    ("file meta", "FileMetaInformationGroupLength"),
}
HIGHDICOM_ITSELF = "Highdicom open-source contributors"
UID_PATTERN = re.compile(r"^[0-9]+(\.[0-9]+)+$")


# --- the reference: highdicom with the arguments write_dicom_seg passed it -----------------


def _reference_images(source: Volume) -> list[Dataset]:
    """The source headers read again, in the volume's z order, with the derived frame of
    reference when the series has none (what `write_dicom_seg` gave highdicom)."""
    series_uid = source.metadata["series_instance_uid"]
    series = find_dicom_series(source.metadata["source"], series_uid=series_uid)
    by_uid = {s.sop_instance_uid: s.path for s in series.slices}
    images = [
        pydicom.dcmread(by_uid[uid], stop_before_pixels=True)
        for uid in referenced_sop_instance_uids(source)
    ]
    if not all(image.get("FrameOfReferenceUID") for image in images):
        derived = pydicom.uid.generate_uid(entropy_srcs=[series_uid, "FrameOfReferenceUID"])
        for image in images:
            image.FrameOfReferenceUID = derived
    return images


def _pydicom_code(code: Code) -> PydicomCode:
    """Our `Code` as pydicom's, which highdicom takes."""
    return PydicomCode(code.value, code.scheme_designator, code.meaning, code.scheme_version)


def _highdicom_seg(
    path: Path, segments: list[SegmentSpec], source: Volume, series_description: str = "livermets"
) -> Path:
    """The SEG highdicom's `Segmentation` writes with `write_dicom_seg`'s former arguments."""
    pixels = np.stack([np.asarray(s.mask, dtype=np.uint8) for s in segments], axis=-1)
    algorithm = hd.AlgorithmIdentificationSequence(
        name="livermets", family=_pydicom_code(ARTIFICIAL_INTELLIGENCE),
        version=livermets.__version__
    )
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=spec.label,
            segmented_property_category=_pydicom_code(spec.category),
            segmented_property_type=_pydicom_code(spec.property_type),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
            anatomic_regions=([_pydicom_code(spec.anatomic_region)] if spec.anatomic_region
                              else None),
        )
        for number, spec in enumerate(segments, start=1)
    ]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*intended person name", category=UserWarning)
        seg = hd.seg.Segmentation(
            source_images=_reference_images(source),
            pixel_array=pixels,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions,
            series_instance_uid=hd.UID(),
            series_number=9901,
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer="livermets",
            manufacturer_model_name="livermets",
            software_versions=livermets.__version__,
            device_serial_number="0",
            content_label="LIVERMETS",
            content_description=series_description[:64],
            series_description=series_description[:64],
            omit_empty_frames=bool(pixels.any()),
            specific_character_set="ISO_IR 192",
        )
    seg.save_as(path)
    return path


# --- comparison ---------------------------------------------------------------------------


def _without_highdicom_itself(reference: Dataset) -> Dataset:
    """The reference less the ContributingEquipmentSequence item naming highdicom (its last);
    the sequence goes when that was its only item."""
    equipment = reference.ContributingEquipmentSequence
    assert equipment[-1].Manufacturer == HIGHDICOM_ITSELF
    assert equipment[-1].ManufacturerModelName == "highdicom"
    del equipment[-1]
    if not equipment:
        del reference.ContributingEquipmentSequence
    return reference


def _differences(ours: Dataset, reference: Dataset, path: tuple[str, ...] = ()) -> Iterator[str]:
    """Every difference between two datasets read from files: tags, VRs, the raw bytes of
    each value, the items of each sequence (recursively); values at `GENERATED` paths are not
    compared."""
    if set(ours.keys()) != set(reference.keys()):
        extra = sorted(str(t) for t in set(ours.keys()) - set(reference.keys()))
        missing = sorted(str(t) for t in set(reference.keys()) - set(ours.keys()))
        yield f"{'/'.join(path)}: tags only in ours {extra}, only in highdicom's {missing}"
        return
    for tag in sorted(ours.keys()):
        mine, theirs = ours.get_item(tag), reference.get_item(tag)
        keyword = pydicom.datadict.keyword_for_tag(tag) or str(tag)
        where = (*path, keyword)
        if mine.VR != theirs.VR:
            yield f"{'/'.join(where)}: VR {mine.VR} vs {theirs.VR}"
        elif mine.VR == "SQ":
            mine_items, their_items = ours[tag].value, reference[tag].value
            if len(mine_items) != len(their_items):
                yield f"{'/'.join(where)}: {len(mine_items)} vs {len(their_items)} items"
                continue
            for a, b in zip(mine_items, their_items, strict=True):
                yield from _differences(a, b, where)
        elif where not in GENERATED and _written(mine) != _written(theirs):
            yield f"{'/'.join(where)}: {_written(mine)!r:.80} vs {_written(theirs)!r:.80}"


def _written(element: Any) -> Any:
    """An element's value as written: its bytes when pydicom has not converted it yet (all but
    SpecificCharacterSet, which it reads on opening), else its value."""
    if isinstance(element, RawDataElement):
        return bytes(element.value or b"")
    return ("converted", element.value)


def _compare_files(ours_path: Path, reference_path: Path) -> tuple[Dataset, Dataset]:
    """Both SEG files read back; asserts they hold the same elements (see the module
    docstring) and the same unpacked frames."""
    ours = pydicom.dcmread(ours_path)
    reference = _without_highdicom_itself(pydicom.dcmread(reference_path))
    meta_differences = [
        f"file meta/{e.keyword}: {e.value!r} vs {reference.file_meta[e.tag].value!r}"
        for e in ours.file_meta
        if ("file meta", e.keyword) not in GENERATED
        and (e.tag not in reference.file_meta or e.value != reference.file_meta[e.tag].value)
    ]
    assert set(ours.file_meta.keys()) == set(reference.file_meta.keys())
    assert meta_differences == []
    assert ours.preamble == reference.preamble
    assert list(_differences(ours, reference)) == []
    np.testing.assert_array_equal(ours.pixel_array, reference.pixel_array)
    _check_generated(ours)
    return ours, reference


def _check_generated(seg: Dataset) -> None:
    """The generated values of our SEG are well formed and consistent."""
    assert seg.SOPInstanceUID == seg.file_meta.MediaStorageSOPInstanceUID
    [organization] = seg.DimensionOrganizationSequence
    uids = {
        organization.DimensionOrganizationUID,
        *(i.DimensionOrganizationUID for i in seg.DimensionIndexSequence),
    }
    assert len(uids) == 1
    for uid in (seg.SOPInstanceUID, seg.SeriesInstanceUID, *uids):
        assert UID_PATTERN.match(str(uid)) and len(str(uid)) <= 64
    assert seg.InstanceCreationDate == seg.ContentDate and len(seg.ContentDate) == 8
    assert seg.InstanceCreationTime == seg.ContentTime


# --- reading back --------------------------------------------------------------------------


def _check_masks_read_back(path: Path, segments: list[SegmentSpec], source: Volume) -> None:
    """highdicom's reader and `read_dicom_seg` both give back every mask, voxel for voxel."""
    expected = np.stack([np.asarray(s.mask, dtype=np.uint8) for s in segments], axis=-1)
    seg = hd.seg.segread(path)
    by_highdicom = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=referenced_sop_instance_uids(source),
        assert_missing_frames_are_empty=True,
    )
    np.testing.assert_array_equal(by_highdicom, expected)
    ours = read_dicom_seg(path, source.geometry)
    assert [s.number for s in ours] == list(range(1, len(segments) + 1))
    for k, segment in enumerate(ours):
        np.testing.assert_array_equal(segment.mask.array, expected[..., k])


def _both_ways(tmp_path: Path, segments: list[SegmentSpec], source: Volume) -> Dataset:
    """Write the SEG both ways, compare them, read ours back; our dataset as read."""
    ours_path = write_dicom_seg(tmp_path / "ours.dcm", segments, source)
    reference_path = _highdicom_seg(tmp_path / "highdicom.dcm", segments, source)
    ours, _ = _compare_files(ours_path, reference_path)
    _check_masks_read_back(ours_path, segments, source)
    return ours


# --- cases ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ircadb() -> Volume:
    """IRCADb 1.17: 119 slices, no FrameOfReferenceUID, no Manufacturer."""
    return read_image(shared_path("ircadb", "3Dircadb1.17", "PATIENT_DICOM"))


@pytest.fixture(scope="module")
def ircadb_masks(ircadb: Volume) -> tuple[np.ndarray, np.ndarray]:
    """A liver (81 slices) holding two metastases (13 and 9 slices), as `predict` writes them:
    the liver mask includes the metastases (the segments overlap)."""
    lesions = ellipsoid(ircadb.shape, (50, 240, 150), (6, 10, 10)) | ellipsoid(
        ircadb.shape, (75, 270, 220), (4, 7, 7)
    )
    liver = ellipsoid(ircadb.shape, (60, 250, 180), (40, 80, 100)) | lesions
    return liver, lesions.astype(bool)


@pytest.mark.slow
def test_liver_and_metastases_on_ircadb(
    ircadb: Volume, ircadb_masks: tuple[np.ndarray, ...], tmp_path: Path
) -> None:
    liver, lesions = ircadb_masks
    seg = _both_ways(tmp_path, [liver_segment(liver), metastases_segment(lesions)], ircadb)
    assert int(seg.NumberOfFrames) == 81 + 22
    assert seg.SegmentsOverlap == "YES"
    assert "ContributingEquipmentSequence" not in seg  # IRCADb names no manufacturer
    assert seg.FrameOfReferenceUID  # derived: IRCADb has none
    assert "DimensionOrganizationType" not in seg  # two segments


@pytest.mark.slow
def test_metastases_cut_out_of_the_liver_on_ircadb(
    ircadb: Volume, ircadb_masks: tuple[np.ndarray, ...], tmp_path: Path
) -> None:
    liver, lesions = ircadb_masks
    apart = (liver > 0) & ~lesions
    seg = _both_ways(tmp_path, [liver_segment(apart), metastases_segment(lesions)], ircadb)
    assert seg.SegmentsOverlap == "NO"


@pytest.mark.slow
def test_empty_metastases_on_ircadb(
    ircadb: Volume, ircadb_masks: tuple[np.ndarray, ...], tmp_path: Path
) -> None:
    liver, lesions = ircadb_masks
    seg = _both_ways(tmp_path, [liver_segment(liver), metastases_segment(lesions & False)], ircadb)
    assert int(seg.NumberOfFrames) == 81 and len(seg.SegmentSequence) == 2


@pytest.mark.slow
def test_all_segments_empty_on_ircadb(ircadb: Volume, tmp_path: Path) -> None:
    empty = np.zeros(ircadb.shape, dtype=np.uint8)
    seg = _both_ways(tmp_path, [liver_segment(empty), metastases_segment(empty)], ircadb)
    assert int(seg.NumberOfFrames) == 2 * 119  # a SEG needs frames: every slice, both segments


@pytest.mark.slow
def test_one_segment_with_a_gap_on_ircadb(ircadb: Volume, tmp_path: Path) -> None:
    """One segment: its identification is shared; slices 10-19 and 30-39 are not evenly
    spaced, so no DimensionOrganizationType."""
    mask = np.zeros(ircadb.shape, dtype=np.uint8)
    mask[10:20, 200:300, 200:300] = 1
    mask[30:40, 210:260, 220:250] = 1
    seg = _both_ways(tmp_path, [metastases_segment(mask)], ircadb)
    assert "SegmentIdentificationSequence" in seg.SharedFunctionalGroupsSequence[0]
    assert "DimensionOrganizationType" not in seg


@pytest.fixture(scope="module")
def three_slices() -> Volume:
    """dcmqi's 3-slice CT (GE): FrameOfReferenceUID, a Manufacturer, no SpacingBetweenSlices."""
    return read_image(shared_path("fixtures", "dcmqi", "ct-3slice"))


def test_two_segments_apart_on_three_slices(three_slices: Volume, tmp_path: Path) -> None:
    liver = np.zeros(three_slices.shape, dtype=np.uint8)
    liver[0, 100:300, 80:320] = 1
    liver[1, 120:280, 100:300] = 1
    lesions = np.zeros(three_slices.shape, dtype=bool)
    lesions[1:, 300:330, 250:262] = True
    seg = _both_ways(tmp_path, [liver_segment(liver), metastases_segment(lesions)], three_slices)
    assert seg.SegmentsOverlap == "NO"
    assert len(seg.ContributingEquipmentSequence) == 1  # the scanner only
    assert (
        "SpacingBetweenSlices" in seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    )  # computed from the positions


def test_one_segment_on_evenly_spaced_slices(three_slices: Volume, tmp_path: Path) -> None:
    mask = np.zeros(three_slices.shape, dtype=np.uint8)
    mask[:, 100:200, 100:200] = 1
    seg = _both_ways(tmp_path, [liver_segment(mask)], three_slices)
    assert seg.DimensionOrganizationType == "3D"


def test_one_empty_segment_on_three_slices(three_slices: Volume, tmp_path: Path) -> None:
    empty = np.zeros(three_slices.shape, dtype=np.uint8)
    seg = _both_ways(tmp_path, [metastases_segment(empty)], three_slices)
    assert int(seg.NumberOfFrames) == 3 and seg.DimensionOrganizationType == "3D"


@pytest.mark.slow
def test_liver_and_metastases_on_crlm(tmp_path: Path) -> None:
    """CRLM-CT-1004 (GE, 41 slices of 5 mm, DICOM as exported from TCIA)."""
    ct = read_image(shared_path("crlm", "CRLM-CT-1004"))
    lesions = ellipsoid(ct.shape, (20, 230, 300), (3, 25, 25))
    liver = ellipsoid(ct.shape, (20, 250, 320), (12, 90, 110)) | lesions
    seg = _both_ways(tmp_path, [liver_segment(liver), metastases_segment(lesions)], ct)
    assert seg.SegmentsOverlap == "YES"


def _rich_headers(ds: Dataset) -> None:
    """Attributes of every copied module kind, equipment, lossy compression, a date-time."""
    ds.SpecificCharacterSet = "ISO_IR 100"  # Latin-1: the SEG re-encodes the text in UTF-8
    ds.OtherPatientIDsSequence = [Dataset()]
    ds.OtherPatientIDsSequence[0].PatientID = "other-17"
    ds.OtherPatientIDsSequence[0].TypeOfPatientID = "TEXT"
    ds.PatientWeight = "72.5"
    ds.PatientSize = "1.80"
    ds.ClinicalTrialSponsorName = "Sponsor"
    ds.ClinicalTrialTimePointID = "baseline"
    ds.ContainerIdentifier = "slide 4"
    ds.StudyDescription = "Abdomen äöü"  # re-encoded in UTF-8
    ds.PatientName = "Müller^Jürgen"
    ds.InstitutionName = "Hôpital"
    ds.StationName = "CT01"
    ds.AcquisitionDateTime = "20030417104607.25"
    ds.LossyImageCompression = "01"
    ds.LossyImageCompressionRatio = "9.5"
    ds.LossyImageCompressionMethod = "ISO_10918_1"
    ds.SpacingBetweenSlices = "1.0000000000000002"  # too long for a DS: re-formatted
    ds.PositionReferenceIndicator = ""
    del ds.ReferringPhysicianName
    ds.add_new(0x00091001, "LO", "private")  # not copied


@pytest.mark.filterwarnings("ignore:The value length:UserWarning")  # the too long DS, on purpose
def test_copied_attributes_on_edited_headers(three_slices: Volume, tmp_path: Path) -> None:
    folder = tmp_path / "ct"
    shutil.copytree(shared_path("fixtures", "dcmqi", "ct-3slice"), folder)
    for file in sorted(folder.iterdir()):
        ds = pydicom.dcmread(file)
        _rich_headers(ds)
        ds.save_as(file)
    ct = read_image(folder)
    mask = np.zeros(ct.shape, dtype=np.uint8)
    mask[1, 100:200, 100:200] = 1
    seg = _both_ways(tmp_path, [liver_segment(mask), metastases_segment(mask)], ct)
    assert seg.PatientWeight == "72.5" and seg.ContainerIdentifier == "slide 4"
    assert seg.StudyDescription == "Abdomen äöü" and seg.ReferringPhysicianName == ""
    assert seg.ContributingEquipmentSequence[0].ContributionDateTime == "20030417104607.25"
    assert seg.LossyImageCompressionMethod == "ISO_10918_1"
    assert 0x00091001 not in seg


def test_slices_in_several_frames_of_reference_are_refused(tmp_path: Path) -> None:
    folder = tmp_path / "ct"
    shutil.copytree(shared_path("fixtures", "dcmqi", "ct-3slice"), folder)
    ds = pydicom.dcmread(folder / "02.dcm")
    ds.FrameOfReferenceUID = pydicom.uid.generate_uid()
    ds.save_as(folder / "02.dcm")
    ct = read_image(folder)
    with pytest.raises(InputError, match="lie in 2 frames of reference"):
        write_dicom_seg(tmp_path / "seg.dcm", [liver_segment(np.zeros(ct.shape))], ct)
    assert not (tmp_path / "seg.dcm").exists()


def test_copied_keywords_are_the_standard_modules() -> None:
    """`SOURCE_KEYWORDS` are the root attributes of the Patient and Study information entities'
    modules and the Specimen module of the CT image IOD, by highdicom's tables of the
    standard (the same for MR, PET and secondary capture)."""
    iods, modules = get_iod_module_map(), get_module_attribute_map()
    for sop_class in (
        "1.2.840.10008.5.1.4.1.1.2",
        "1.2.840.10008.5.1.4.1.1.4",
        "1.2.840.10008.5.1.4.1.1.128",
        "1.2.840.10008.5.1.4.1.1.7",
    ):
        copied = [
            attribute["keyword"]
            for module in iods[get_sop_class_iod_map()[sop_class]]
            if module["ie"] in ("Patient", "Study") or module["key"] == "specimen"
            for attribute in modules[module["key"]]
            if not attribute["path"]
        ]
        assert sorted(copied) == sorted(SOURCE_KEYWORDS)
