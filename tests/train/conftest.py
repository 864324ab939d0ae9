"""Small generated cohorts for training tests (built once per session)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from livermets.datasets.synth import generate_cohort


def _cohort(root: Path, *, patients: int, matrix: int, slices: int) -> Path:
    """A generated cohort whose last patient is `validation` and the others `training`."""
    summary = generate_cohort(root, patients=patients, seed=0, matrix=matrix, slices=slices)
    with summary.manifest.open() as f:
        rows = list(csv.DictReader(f))
    last = max(r["patient_id"] for r in rows)
    for row in rows:
        row["split"] = "validation" if row["patient_id"] == last else "training"
    manifest = root / "train.csv"
    with manifest.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return manifest


@pytest.fixture(scope="session")
def tiny_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 patients, 64x64 pixels, 24 slices: enough for the liver task and mechanics."""
    return _cohort(tmp_path_factory.mktemp("tiny"), patients=4, matrix=64, slices=24)


@pytest.fixture(scope="session")
def lesion_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 patients, 128x128 pixels (3 mm pixels: a 10 mm lesion spans 3), 32 slices."""
    return _cohort(tmp_path_factory.mktemp("lesion"), patients=6, matrix=128, slices=32)
