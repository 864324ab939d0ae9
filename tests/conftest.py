"""Shared test fixtures: the real CT data in ../shared/data, skipped with a reason when absent."""

from __future__ import annotations

import csv
import functools
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import numpy.typing as npt
import pytest

from livermets.datasets.synth import generate_cohort

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("LIVERMETS_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real public CT (../shared/data); the test is skipped when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real CT data not found at {SHARED_DATA} (set LIVERMETS_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(params=[True, False], ids=["ball", "distance-map"])
def both_distance_ways(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A test runs with `morphology.within_distance` dilating by the ball on any array size,
    then choosing by its size rule (small arrays: the distance map), for identity checks."""
    from livermets import morphology

    if request.param:
        monkeypatch.setattr(morphology, "_VOXELS_PER_ROW", 0)


def shared_path(*parts: str) -> Path:
    """A path inside ../shared/data, skipping the calling test when it does not exist."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not found (real CT data from ../shared/data)")
    return path


@functools.cache
def ellipsoid(shape: tuple[int, ...], centre: tuple[int, int, int],
              radii: tuple[int, int, int]) -> npt.NDArray[np.uint8]:
    """uint8 0/1 ellipsoid (z, y, x) with centre and semi-axes in voxels."""
    z, y, x = np.indices(shape)
    d = sum(((a - c) / r) ** 2 for a, c, r in zip((z, y, x), centre, radii, strict=True))
    return np.asarray(d <= 1.0).astype(np.uint8)


def repo_script(relative: str) -> ModuleType:
    """A script of the repository (e.g. "benchmarks/starter_validation.py") imported once as
    a module named after it, so tests can call its functions without running it."""
    path = REPO_ROOT / relative
    name = f"repo_script_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


# --- small generated cohorts for training and inference tests (built once per session) ---


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


@pytest.fixture(scope="session")
def tiny_runs(tiny_manifest: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A liver and a lesion run (unet, 64 px, a few epochs) trained on `tiny_manifest`.

    Real `livermets train` runs, small enough for tests: the liver model segments the
    generated livers (validation Dice about 0.85); the lesion model is barely trained.
    """
    from livermets.config import make_train_config
    from livermets.train.trainer import train

    root = tmp_path_factory.mktemp("tiny_runs")
    runs = {}
    for task, epochs in (("liver", 5), ("lesion", 2)):
        settings = make_train_config({"task": task, "epochs": epochs, "image_size": 64,
                                      "base_width": 8, "batch_size": 8})
        runs[task] = train(tiny_manifest, root / task, settings).run_dir
    return runs
