"""The generated cohort (`livermets synth`): files, geometry, ground truth, determinism."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import ndimage
from typer.testing import CliRunner

from livermets.cli import app
from livermets.datasets.synth import (
    PROTOCOLS,
    CohortSummary,
    generate_case,
    generate_cohort,
    plan_patient,
    recist_response,
)
from livermets.datasets.synth.geometry import _Grid
from livermets.datasets.synth.paint import _render_tissue
from livermets.datasets.synth.protocols import LIVER_TISSUES, Tissue
from livermets.datasets.synth.render import _through_slice_hu
from livermets.errors import InputError
from livermets.io.image import read_geometry, read_image
from livermets.io.manifest import read_manifest, validate_manifest
from livermets.measure import measure_lesions

SEED = 7
MATRIX = 96
SLICES = 32
PATIENTS = 3


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> CohortSummary:
    out = tmp_path_factory.mktemp("synth") / "cohort"
    return generate_cohort(out, patients=PATIENTS, seed=SEED, matrix=MATRIX, slices=SLICES)


@pytest.fixture(scope="module")
def truth(cohort: CohortSummary) -> dict[str, Any]:
    return json.loads(cohort.truth.read_text())


def _cases(truth: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(pid, tp, entry) for pid, patient in truth["patients"].items()
            for tp, entry in patient["timepoints"].items()]


def _read(cohort: CohortSummary, relative: str) -> np.ndarray:
    return read_image(cohort.out_dir / relative).array


def test_manifest_rows_splits_and_centres(cohort: CohortSummary) -> None:
    rows = read_manifest(cohort.manifest)
    validate_manifest(rows)
    assert [(r.patient_id, r.timepoint) for r in rows] == [
        (f"synth{i:03d}", tp) for i in range(1, PATIENTS + 1) for tp in ("baseline", "tp1")]
    splits = {(r.patient_id, r.timepoint): r.split for r in rows}
    assert splits[("synth001", "baseline")] == "training"
    assert splits[("synth002", "baseline")] == "valB"
    assert {splits[(f"synth{i:03d}", "tp1")] for i in range(1, PATIENTS + 1)} == {"valTP1"}
    centres = {r.patient_id: r.center for r in rows}
    assert (centres["synth001"], centres["synth002"]) == ("A", "B")
    assert cohort.cts == 2 * PATIENTS and cohort.centers["A"] + cohort.centers["B"] == PATIENTS


def test_files_match_generate_case_and_geometry_round_trips(cohort: CohortSummary,
                                                            truth: dict[str, Any]) -> None:
    case = generate_case(SEED, 1, "tp1", matrix=MATRIX, slices=SLICES)
    folder = cohort.out_dir / "synth002" / "tp1"
    for name, volume in (("ct", case.ct), ("liver", case.liver), ("lesions", case.lesions)):
        written = read_image(folder / f"{name}.nii.gz")
        assert written.geometry.matches(volume.geometry)
        assert written.array.dtype == volume.array.dtype
        np.testing.assert_array_equal(written.array, volume.array)
    assert truth["patients"]["synth002"]["timepoints"]["tp1"]["geometry"] == \
        case.ct.geometry.to_json()


def test_same_patient_whatever_the_cohort_size(cohort: CohortSummary, tmp_path: Path) -> None:
    smaller = generate_cohort(tmp_path / "two", patients=2, seed=SEED, matrix=MATRIX,
                              slices=SLICES)
    for pid in ("synth001", "synth002"):
        for name in ("baseline/ct.nii.gz", "tp1/lesions.nii.gz"):
            np.testing.assert_array_equal(read_image(smaller.out_dir / pid / name).array,
                                          _read(cohort, f"{pid}/{name}"))
    other_seed = generate_case(SEED + 1, 0, matrix=MATRIX, slices=SLICES)
    assert not np.array_equal(other_seed.ct.array, _read(cohort, "synth001/baseline/ct.nii.gz"))


def test_masks_lie_on_the_ct_grid_with_the_right_types(cohort: CohortSummary,
                                                       truth: dict[str, Any]) -> None:
    for _, _, entry in _cases(truth):
        ct = read_geometry(cohort.out_dir / entry["image"])
        for key in ("liver_mask", "lesion_mask"):
            assert read_geometry(cohort.out_dir / entry[key]).matches(ct)
        assert _read(cohort, entry["image"]).dtype == np.int16
        liver = _read(cohort, entry["liver_mask"])
        assert liver.dtype == np.uint8 and set(np.unique(liver)) == {0, 1}


def test_geometry_is_physical_at_any_matrix(truth: dict[str, Any]) -> None:
    for pid, patient in truth["patients"].items():
        geometry = patient["timepoints"]["baseline"]["geometry"]
        dz, dy, dx = geometry["spacing"]
        fov = dx * MATRIX
        low, high = PROTOCOLS[patient["center"]].fov_range_mm
        assert dy == dx and low <= fov <= high, pid
        assert geometry["shape"] == [SLICES, MATRIX, MATRIX]
        assert 150.0 <= dz * SLICES <= 260.0  # the craniocaudal coverage stays realistic
        ox, oy, oz = geometry["origin"]
        assert ox == pytest.approx(-fov / 2 + dx / 2) and oy == pytest.approx(-fov / 2 + dy / 2)
        assert oz < 0
        assert geometry["direction"] == [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]


def test_default_sampling_follows_the_centre_protocol() -> None:
    a, b = plan_patient(SEED, 0), plan_patient(SEED, 1)  # synth001 is A, synth002 is B
    assert (a.center, b.center) == ("A", "B")
    for plan in (a, b):
        dz, _, dx = plan.geometry.spacing
        assert dz == plan.protocol.slice_spacing_mm
        assert plan.geometry.shape[1:] == (512, 512)
        assert 0.65 <= dx <= 0.87
        assert 150.0 <= dz * plan.geometry.shape[0] <= 260.0
    assert a.geometry.spacing[0] < b.geometry.spacing[0]
    assert a.noise_sd_hu < b.noise_sd_hu * 1.5


def test_lesions_inside_liver_separate_and_numbered(cohort: CohortSummary,
                                                    truth: dict[str, Any]) -> None:
    for pid, tp, entry in _cases(truth):
        labels = _read(cohort, entry["lesion_mask"])
        liver = _read(cohort, entry["liver_mask"]).astype(bool)
        ids = [lesion["id"] for lesion in entry["lesions"]]
        assert ids == list(range(1, len(ids) + 1)), (pid, tp)
        assert sorted(set(np.unique(labels)) - {0}) == ids, (pid, tp)
        assert np.all(liver[labels > 0]), (pid, tp)
        components, count = ndimage.label(labels > 0, structure=np.ones((3, 3, 3)))
        assert count == len(ids), (pid, tp)
        for component in range(1, count + 1):
            assert len(np.unique(labels[components == component])) == 1


def test_truth_measurements_agree_with_the_files(cohort: CohortSummary,
                                                 truth: dict[str, Any]) -> None:
    for _, _, entry in _cases(truth):
        labels = read_image(cohort.out_dir / entry["lesion_mask"])
        measured = measure_lesions(labels.array, labels.spacing)
        for lesion in entry["lesions"]:
            m = measured[lesion["id"]]
            assert lesion["volume_ml"] == pytest.approx(m.volume_ml, abs=1e-4)
            assert lesion["longest_axial_diameter_mm"] == pytest.approx(m.longest_diameter_mm,
                                                                        abs=1e-3)
            assert lesion["perpendicular_diameter_mm"] <= lesion["longest_axial_diameter_mm"]
            centre = labels.geometry.index_to_physical(m.centroid_index)
            assert lesion["centroid_lps_mm"] == pytest.approx(list(centre), abs=1e-3)
            group = "small" if m.longest_diameter_mm < 20 else "large"
            assert lesion["size_group"] == group
        liver = _read(cohort, entry["liver_mask"])
        volume = liver.sum() * np.prod(labels.spacing) / 1000
        assert entry["liver_volume_ml"] == pytest.approx(volume, abs=0.01)
        assert 1150.0 <= volume <= 2050.0


def test_baseline_and_tp1_links_are_consistent(truth: dict[str, Any]) -> None:
    for patient in truth["patients"].values():
        base = {lesion["id"]: lesion for lesion in patient["timepoints"]["baseline"]["lesions"]}
        follow = {lesion["id"]: lesion for lesion in patient["timepoints"]["tp1"]["lesions"]}
        for lesion in base.values():
            if lesion["tp1_id"] is None:
                assert lesion["event"] == "vanish" and lesion["response"] == "vanished"
            else:
                assert follow[lesion["tp1_id"]]["baseline_id"] == lesion["id"]
        for lesion in follow.values():
            if lesion["baseline_id"] is None:
                assert lesion["event"] == "new" and lesion["response"] == "new"
            else:
                assert base[lesion["baseline_id"]]["tp1_id"] == lesion["id"]


def test_size_groups_and_diameter_range(cohort: CohortSummary, truth: dict[str, Any]) -> None:
    baseline = [lesion["longest_axial_diameter_mm"] for patient in truth["patients"].values()
                for lesion in patient["timepoints"]["baseline"]["lesions"]]
    assert any(d < 20 for d in baseline) and any(d >= 20 for d in baseline)
    voxel_diagonal = math.hypot(*truth["patients"]["synth001"]["timepoints"]["baseline"]
                                ["geometry"]["spacing"][1:])
    assert min(baseline) >= min(5.0, voxel_diagonal) and max(baseline) <= 60.0 + voxel_diagonal
    assert cohort.size_groups["baseline"]["small"] == sum(d < 20 for d in baseline)
    assert all(1 <= len(p["timepoints"]["baseline"]["lesions"]) <= 10
               for p in truth["patients"].values())


def test_complete_response_and_progression_patients(cohort: CohortSummary,
                                                    truth: dict[str, Any]) -> None:
    progression = truth["patients"]["synth002"]
    assert progression["response"]["recist_category"] == "PD"
    assert progression["response"]["new_lesions"] >= 1
    complete = truth["patients"]["synth003"]
    assert complete["response"]["recist_category"] == "CR"
    assert complete["timepoints"]["baseline"]["lesions"]
    assert complete["timepoints"]["tp1"]["lesions"] == []
    assert not _read(cohort, "synth003/tp1/lesions.nii.gz").any()
    assert cohort.recist["CR"] >= 1 and cohort.recist["PD"] >= 1


def test_tp1_pose_is_recorded_and_moves_the_anatomy(cohort: CohortSummary,
                                                    truth: dict[str, Any]) -> None:
    for pid, patient in truth["patients"].items():
        move = patient["tp1_from_baseline"]
        assert 1.0 <= abs(move["rotation_deg"]) <= 6.0
        assert 2.0 <= float(np.linalg.norm(move["translation_mm"])) <= 16.0
        matrix = np.asarray(move["matrix"])
        masks = {}
        for tp in ("baseline", "tp1"):
            liver = read_image(cohort.out_dir / patient["timepoints"][tp]["liver_mask"])
            masks[tp] = liver.geometry.index_to_physical(
                ndimage.center_of_mass(liver.array))
        predicted = matrix[:3, :3] @ masks["baseline"] + matrix[:3, 3]
        assert np.linalg.norm(predicted - masks["tp1"]) < 3.0, pid
        assert np.linalg.norm(masks["baseline"] - masks["tp1"]) > 2.0, pid


def test_hu_values_are_plausible(cohort: CohortSummary, truth: dict[str, Any]) -> None:
    for pid, tp, entry in _cases(truth):
        ct = _read(cohort, entry["image"])
        liver = _read(cohort, entry["liver_mask"]).astype(bool)
        labels = _read(cohort, entry["lesion_mask"])
        parenchyma = float(ct[liver & (labels == 0)].mean())
        assert 90.0 <= parenchyma <= 140.0, (pid, tp)
        assert ct[:, :3, :3].mean() < -900  # air in the corners
        assert ct.max() > 300  # bone
        plain = [lesion["id"] for lesion in entry["lesions"] if not lesion["calcified"]]
        lesions = ct[np.isin(labels, plain)]
        if lesions.size:  # hypodense (calcified lesions have bright parts)
            assert float(np.median(lesions)) < parenchyma - 15, (pid, tp)


def test_recist_response_rules() -> None:
    assert recist_response([30, 20, 8], [15, 10, None], 0)["recist_category"] == "PR"
    assert recist_response([30, 20, 8], [None, None, None], 0)["recist_category"] == "CR"
    assert recist_response([30, 20, 8], [None, None, None], 1)["recist_category"] == "PD"
    grown = recist_response([30, 20, 8], [36, 24, 8], 0)
    assert (grown["recist_category"], grown["sum_change_pct"]) == ("PD", 20.0)
    assert recist_response([30, 20, 8], [33, 22, 30], 0)["recist_category"] == "SD"
    assert recist_response([30, 20, 8], [30, 20, 8], 0)["target_lesion_indices"] == [0, 1]


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="patients"):
        generate_cohort(tmp_path / "a", patients=0)
    with pytest.raises(InputError, match="matrix"):
        generate_cohort(tmp_path / "b", matrix=8)
    with pytest.raises(InputError, match="timepoint"):
        generate_case(0, 0, "tp2", matrix=48, slices=12)


def test_cli_writes_a_cohort_and_refuses_a_non_empty_folder(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "cli"
    args = ["synth", "--out", str(out), "--patients", "1", "--matrix", "48", "--slices", "12"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "1 patients, 2 CTs" in result.stdout and "small < 20 mm" in result.stdout
    assert (out / "manifest.csv").is_file() and (out / "truth.json").is_file()
    again = runner.invoke(app, args)
    assert again.exit_code == 2
    assert "not empty" in again.stderr
    assert runner.invoke(app, [*args, "--overwrite"]).exit_code == 0


def test_thick_slices_blend_the_liver_surface_and_keep_its_volume() -> None:
    """Through-slice averaging (three samples per slice): with a LUT that is 1 on liver and 0
    elsewhere each voxel holds the share of its samples in the liver (0, 1/3, 2/3 or 1), their
    sum is the liver's volume in voxels as the slice centres alone count it (both estimate
    the same integral), and the top slice of the liver (its dome, 12 mm slices) is blended."""
    plan = plan_patient(0, 1, matrix=96, slices=16)
    grid = _Grid(plan.geometry, plan.poses["baseline"])
    tissue = _render_tissue(plan.anatomy, grid)
    lut = np.zeros(len(Tissue), np.float32)
    lut[list(LIVER_TISSUES)] = 1.0
    share = _through_slice_hu(plan.anatomy, grid, tissue, lut)
    centre = lut[tissue]
    assert set(np.unique(np.round(share * 3.0, 4))) <= {0.0, 1.0, 2.0, 3.0}
    assert share.sum() == pytest.approx(centre.sum(), rel=0.01)
    partial = (share > 0) & (share < 1)
    assert 0.1 < partial.sum() / centre.sum() < 0.5  # ~25%: surfaces cross 12 mm slices
    top = int(np.flatnonzero(centre.any(axis=(1, 2))).max())
    assert share[top][centre[top] > 0].mean() < 0.9  # the dome: liver and what lies above
