"""The cohort manifest: typed rows, paths relative to the manifest, one clear error per problem."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from livermets.errors import InputError
from livermets.io import Volume, write_image
from livermets.io.manifest import (
    COLUMNS,
    ManifestRow,
    read_manifest,
    timepoint_order,
    validate_manifest,
    write_manifest,
)

HEADER = ",".join(COLUMNS)


@pytest.fixture
def cohort(tmp_path: Path) -> Path:
    """Two CTs of one patient with masks, in a sub-folder, on a 4x5x6 grid."""
    data = tmp_path / "data"
    ct = Volume.from_array(np.zeros((4, 5, 6), np.int16), spacing=(2.0, 0.8, 0.8),
                           origin=(-10.0, -20.0, 5.0))
    liver = ct.with_array(np.ones((4, 5, 6), np.uint8))
    lesions = np.zeros((4, 5, 6), np.uint8)
    lesions[1, 1, 1] = 1
    lesions[2, 3, 4] = 2
    for tp in ("baseline", "tp1"):
        write_image(ct, data / f"p1_{tp}.nii.gz")
        write_image(liver, data / f"p1_{tp}_liver.nii.gz")
        write_image(ct.with_array(lesions), data / f"p1_{tp}_lesions.nii.gz")
    return tmp_path


def _write(folder: Path, *lines: str, header: str = HEADER) -> Path:
    path = folder / "manifest.csv"
    path.write_text("\n".join([header, *lines]) + "\n")
    return path


def _row(tp: str = "baseline", split: str = "training", pid: str = "p1") -> str:
    return (f"{pid},A,{tp},data/p1_{tp}.nii.gz,data/p1_{tp}_liver.nii.gz,"
            f"data/p1_{tp}_lesions.nii.gz,{split}")


def test_reads_typed_rows_with_paths_relative_to_manifest(cohort: Path) -> None:
    rows = read_manifest(_write(cohort, _row(), "p1,A,tp1,data/p1_tp1.nii.gz,,,"))
    assert [r.case_id for r in rows] == ["p1_baseline", "p1_tp1"]
    assert rows[0].image == cohort.resolve() / "data" / "p1_baseline.nii.gz"
    assert rows[0].liver_mask is not None and rows[0].liver_mask.is_file()
    assert rows[0].center == "A" and rows[0].split == "training" and rows[0].row_number == 1
    assert rows[1].liver_mask is None and rows[1].lesion_mask is None and rows[1].split == ""
    validate_manifest(rows)


def test_columns_in_any_order_and_blank_lines(cohort: Path) -> None:
    header = "image,patient_id,timepoint,center,split,lesion_mask,liver_mask"
    path = _write(cohort, "data/p1_tp1.nii.gz,p1,tp1,B,,,", "", header=header)
    (row,) = read_manifest(path)
    assert (row.patient_id, row.timepoint, row.center) == ("p1", "tp1", "B")


def test_write_then_read_round_trip(cohort: Path) -> None:
    rows = read_manifest(_write(cohort, _row(), _row("tp1", "valTP1")))
    out = cohort / "elsewhere" / "copy.csv"
    write_manifest(rows, out)
    assert "../data/p1_baseline.nii.gz" in out.read_text()
    again = read_manifest(out)
    assert [(r.image, r.liver_mask, r.lesion_mask, r.split) for r in again] == [
        (r.image, r.liver_mask, r.lesion_mask, r.split) for r in rows
    ]


def test_timepoint_order() -> None:
    assert sorted(["tp2", "baseline", "tp10", "tp1"], key=timepoint_order) == [
        "baseline", "tp1", "tp2", "tp10"]


@pytest.mark.parametrize(
    ("lines", "header", "message"),
    [
        ([_row()], HEADER + ",notes", r"unknown column\(s\) 'notes'"),
        ([_row()], HEADER.replace(",split", ""), r"missing column\(s\) split"),
        ([_row(), _row()], HEADER, "row 2 repeats patient p1 at baseline .first in row 1"),
        (["p1,A,baseline,data/none.nii.gz,,,"], HEADER,
         "row 1 .*image .*none.nii.gz does not exist"),
        (["p1,A,baseline,data/p1_baseline.nii.gz,data/no_liver.nii.gz,,"], HEADER,
         "row 1 .*liver_mask .*does not exist"),
        ([",A,baseline,data/p1_baseline.nii.gz,,,"], HEADER, "row 1 has no patient_id"),
        (["p1,A,followup,data/p1_baseline.nii.gz,,,"], HEADER, "timepoint 'followup'"),
        (["p 1,A,baseline,data/p1_baseline.nii.gz,,,"], HEADER, "patient_id 'p 1'"),
        (["p1,A,baseline,data/p1_baseline.nii.gz,,,,extra"], HEADER, "more values"),
        ([], HEADER, "no rows"),
    ],
)
def test_bad_manifests(cohort: Path, lines: list[str], header: str, message: str) -> None:
    with pytest.raises(InputError, match=message) as info:
        read_manifest(_write(cohort, *lines, header=header))
    assert "\n" not in str(info.value)


def test_missing_and_empty_manifest_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="manifest not found"):
        read_manifest(tmp_path / "none.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(InputError, match="empty"):
        read_manifest(tmp_path / "empty.csv")
    (tmp_path / "binary.csv").write_bytes(b"\xff\xfe\x00\x81garbage")
    with pytest.raises(InputError, match="UTF-8"):
        read_manifest(tmp_path / "binary.csv")


def test_mask_on_another_grid_names_row_and_difference(cohort: Path) -> None:
    shifted = Volume.from_array(np.zeros((4, 5, 6), np.uint8), spacing=(2.0, 0.8, 0.8),
                                origin=(-10.0, -20.0, 7.0))
    write_image(shifted, cohort / "data" / "p1_baseline_liver.nii.gz")
    rows = read_manifest(_write(cohort, _row()))
    with pytest.raises(InputError, match=r"row 1 .*liver_mask .*not on the image's grid .*origin"):
        validate_manifest(rows)


def test_mask_with_other_shape(cohort: Path) -> None:
    write_image(Volume.from_array(np.zeros((3, 5, 6), np.uint8), spacing=(2.0, 0.8, 0.8),
                                  origin=(-10.0, -20.0, 5.0)),
                cohort / "data" / "p1_baseline_lesions.nii.gz")
    expected = r"lesion_mask .*shape \(z, y, x\) \[4, 5, 6\] vs \[3, 5, 6\]"
    with pytest.raises(InputError, match=expected):
        validate_manifest(read_manifest(_write(cohort, _row())))


@pytest.mark.parametrize(
    ("values", "message"),
    [(np.full((4, 5, 6), 0.5, np.float32), "non-integer"),
     (np.full((4, 5, 6), -1, np.int16), "negative")],
)
def test_mask_values_must_be_labels(cohort: Path, values: np.ndarray, message: str) -> None:
    ct = Volume.from_array(values, spacing=(2.0, 0.8, 0.8), origin=(-10.0, -20.0, 5.0))
    write_image(ct, cohort / "data" / "p1_baseline_lesions.nii.gz")
    with pytest.raises(InputError, match=f"row 1 .*lesion_mask .*{message}"):
        validate_manifest(read_manifest(_write(cohort, _row())))


def test_float_mask_with_integer_values_is_accepted(cohort: Path) -> None:
    values = np.zeros((4, 5, 6), np.float32)
    values[0, 0, 0] = 3.0
    ct = Volume.from_array(values, spacing=(2.0, 0.8, 0.8), origin=(-10.0, -20.0, 5.0))
    write_image(ct, cohort / "data" / "p1_baseline_lesions.nii.gz")
    validate_manifest(read_manifest(_write(cohort, _row())))


def test_row_dataclass_defaults() -> None:
    row = ManifestRow(patient_id="x", timepoint="tp2", image=Path("/a.nii.gz"))
    assert row.case_id == "x_tp2" and row.liver_mask is None and row.center == ""
