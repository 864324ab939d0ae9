"""Writing the cohort: the output folder, NIfTI files, manifest.csv, truth.json and a
summary of what was written."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from livermets import __version__
from livermets.datasets.synth.plan import TIMEPOINTS, _check_sampling, plan_patient
from livermets.datasets.synth.protocols import PROTOCOLS
from livermets.datasets.synth.render import SynthCase, render_case
from livermets.datasets.synth.truth import SIZE_THRESHOLD_MM, _patient_truth
from livermets.errors import InputError
from livermets.io.atomic import write_text_atomic
from livermets.io.image import write_image
from livermets.io.manifest import ManifestRow, write_manifest
from livermets.types import PathLike

# The package's name, as when this was one module: log lines keep their origin.
logger = logging.getLogger(__package__)

#: Bumped whenever the same seed would give different images.
GENERATOR_VERSION = "3"


@dataclass(frozen=True)
class CohortSummary:
    """What `generate_cohort` wrote: counts and paths."""

    out_dir: Path
    manifest: Path
    truth: Path
    patients: int
    cts: int
    lesions: dict[str, int]  # baseline, tp1
    size_groups: dict[str, dict[str, int]]  # timepoint -> small/large -> count
    centers: dict[str, int]  # A/B -> patients
    recist: dict[str, int]  # CR/PR/SD/PD -> patients
    seconds: float

    def lines(self) -> list[str]:
        """A short human-readable summary."""
        return [
            f"wrote {self.patients} patients, {self.cts} CTs to {self.out_dir}",
            "centres: " + ", ".join(f"{k} {v}" for k, v in sorted(self.centers.items())),
            *(f"{tp} lesions: {self.lesions[tp]} (small < 20 mm: "
              f"{self.size_groups[tp]['small']}, large >= 20 mm: {self.size_groups[tp]['large']})"
              for tp in TIMEPOINTS),
            "response: " + ", ".join(f"{k} {v}" for k, v in self.recist.items()),
            f"manifest: {self.manifest}",
            f"truth: {self.truth}",
        ]


def _prepare_out_dir(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir} is a file; give a folder for the cohort")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise InputError(f"{out_dir} exists and is not empty; choose another folder or pass "
                         "--overwrite")
    out_dir.mkdir(parents=True, exist_ok=True)


def generate_cohort(out_dir: PathLike, *, patients: int = 10, seed: int = 0, matrix: int = 512,
                    slices: int | None = None, overwrite: bool = False) -> CohortSummary:
    """Write the generated cohort: NIfTI CT and masks, `manifest.csv` and `truth.json`.

    Refuses a non-empty `out_dir` unless `overwrite` (files of this cohort are then replaced;
    other files are left alone). truth.json holds the generator version, seed, sampling, the
    centre protocols and, per patient: centre, scenario, split, the tp1 pose against baseline
    and, per time point, the files, geometry, liver volume and per-lesion truth measured on
    the written masks by `livermets.measure` (id = label, volume_ml,
    longest_axial_diameter_mm, perpendicular_diameter_mm, diameter_slice, centroid_lps_mm,
    centroid_index_zyx, size_group, necrotic, calcified, event, response and the link to the
    other time point: `tp1_id` for baseline lesions, `baseline_id` for tp1 ones, null when
    vanished or new), and the patient's RECIST-like response (see `recist_response`).
    """
    if patients < 1 or patients > 999:
        raise InputError(f"--patients {patients} is out of range; give 1..999")
    if seed < 0:
        raise InputError(f"--seed {seed} must be >= 0")
    _check_sampling(matrix, slices)
    root = Path(out_dir)
    _prepare_out_dir(root, overwrite)
    start = time.perf_counter()
    rows: list[ManifestRow] = []
    truth_patients: dict[str, Any] = {}
    for index in range(patients):
        plan = plan_patient(seed, index, matrix=matrix, slices=slices)
        cases = {tp: render_case(plan, tp) for tp in TIMEPOINTS}
        for tp, case in cases.items():
            rows.append(_write_case(root, case, plan.splits[tp]))
        truth_patients[plan.patient_id] = _patient_truth(plan, cases)
        logger.info("%s (centre %s, %s) written", plan.patient_id, plan.center, plan.scenario)
    manifest = write_manifest(rows, root / "manifest.csv")
    truth = {
        "generator": "livermets synth",
        "generator_version": GENERATOR_VERSION,
        "livermets_version": __version__,
        "seed": seed,
        "matrix": matrix,
        "slices": slices,
        "size_threshold_mm": SIZE_THRESHOLD_MM,
        "conventions": _CONVENTIONS,
        "protocols": {name: asdict(p) for name, p in PROTOCOLS.items()},
        "patients": truth_patients,
    }
    truth_path = root / "truth.json"
    write_text_atomic(truth_path, json.dumps(truth, indent=1) + "\n")
    return _summary(root, manifest, truth_path, truth_patients, time.perf_counter() - start)


_CONVENTIONS = {
    "spacing": "(z, y, x) mm",
    "lps": "patient LPS (x, y, z) mm, as ITK",
    "diameters": "edge to edge on the axial slice of the longest diameter, by livermets.measure",
    "size_group": "small: longest axial diameter < 20 mm, large: >= 20 mm",
    "pose": "world = R(rotation_deg about +z) @ patient + translation_mm; "
            "tp1_from_baseline maps a baseline LPS point to the same anatomy at tp1",
    "response": "per lesion from the longest diameter: vanished, decreased (<= -30%), "
                "increased (>= +20%), stable; new at tp1",
    "recist": "targets: the 2 largest baseline lesions >= 10 mm (RECIST 1.1 per-organ limit); "
              "CR: all lesions vanished and none new; PD: a new lesion or target sum +20% and "
              "+5 mm; PR: target sum -30%; SD otherwise",
    "event": "what the generator did to the lesion at tp1: shrink, stable, grow, vanish, new",
    "splits": "baselines of synth001, synth003, ... training, other baselines valB, tp1 valTP1",
}


def _write_case(root: Path, case: SynthCase, split: str) -> ManifestRow:
    folder = root / case.patient_id / case.timepoint
    image = write_image(case.ct, folder / "ct.nii.gz")
    liver = write_image(case.liver, folder / "liver.nii.gz")
    lesions = write_image(case.lesions, folder / "lesions.nii.gz")
    return ManifestRow(patient_id=case.patient_id, timepoint=case.timepoint, image=image,
                       center=case.center, liver_mask=liver, lesion_mask=lesions, split=split)


def _summary(root: Path, manifest: Path, truth: Path, patients: dict[str, Any],
             seconds: float) -> CohortSummary:
    lesions = dict.fromkeys(TIMEPOINTS, 0)
    groups = {tp: {"small": 0, "large": 0} for tp in TIMEPOINTS}
    centers: dict[str, int] = {}
    recist = dict.fromkeys(("CR", "PR", "SD", "PD"), 0)
    for patient in patients.values():
        centers[patient["center"]] = centers.get(patient["center"], 0) + 1
        recist[patient["response"]["recist_category"]] += 1
        for tp in TIMEPOINTS:
            for entry in patient["timepoints"][tp]["lesions"]:
                lesions[tp] += 1
                groups[tp][entry["size_group"]] += 1
    return CohortSummary(root, manifest, truth, len(patients), 2 * len(patients), lesions,
                         groups, centers, recist, seconds)
