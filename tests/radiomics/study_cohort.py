"""The `study` fixture: a generated cohort in a study's layout, shared by the radiomics tests
(tests/radiomics/conftest.py: built once for them) and tests/test_study_radiomics.py (its own
copy, since it writes into the study folder)."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
from scipy import ndimage

from livermets.datasets.synth import generate_cohort
from livermets.io.image import read_image, write_image
from livermets.track.run import track_manifest

#: A fast subset of the preset: shape and first-order features on the same 1 mm grid.
PARAMS = """\
imageType: {Original: {}}
featureClass: {shape: [], firstorder: []}
setting: {resampledPixelSpacing: [1.0, 1.0, 1.0], interpolator: sitkBSpline, binWidth: 25}
"""


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="session")
def study(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """2 patients x 2 time points (64 x 64 x 24) in a study's layout: predictions
    (`predictions/unet`) are the reference masks, except the first CT's lesion 2 dropped and
    its lesion 1 grown by one voxel; `track` on both (`track/reference`, `track/unet`)."""
    root = tmp_path_factory.mktemp("delta")
    manifest = generate_cohort(root / "cohort", patients=2, seed=0, matrix=64,
                               slices=24).manifest
    predictions = root / "predictions" / "unet"
    for index, row in enumerate(_csv(manifest)):
        case = predictions / f"{row['patient_id']}_{row['timepoint']}"
        case.mkdir(parents=True)
        shutil.copy(manifest.parent / row["liver_mask"], case / "liver.nii.gz")
        mask = read_image(manifest.parent / row["lesion_mask"])
        labels = mask.array.copy()
        if index == 0:
            labels[labels == 2] = 0
            grown = ndimage.binary_dilation(labels == 1) & (labels == 0)
            labels[grown] = 1
        write_image(mask.with_array(labels), case / "lesions.nii.gz")
    track_manifest(manifest, root / "track" / "reference")
    track_manifest(manifest, root / "track" / "unet", predictions=predictions)
    params = root / "params.yaml"
    params.write_text(PARAMS)
    return {"root": root, "manifest": manifest, "predictions": predictions, "params": params,
            "track_reference": root / "track" / "reference",
            "track_predicted": root / "track" / "unet"}
