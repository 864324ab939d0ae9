"""The scoring of reader-marked nodules in benchmarks/starter_validation.py, by hand."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from livermets.io import Volume, write_image
from tests.conftest import repo_script


def test_a_mark_is_found_within_two_pixels_and_its_peak_read_within_four(
        tmp_path: Path) -> None:
    validation = repo_script("benchmarks/starter_validation.py")
    lesions = np.zeros((3, 20, 20), np.uint8)
    lesions[1, 10, 12] = 1  # 2 pixels right of the first mark: found
    probability = np.zeros((3, 20, 20), np.float32)
    probability[1, 10, 14] = 0.9  # 4 pixels away: read
    probability[1, 10, 15] = 0.99  # 5 pixels away: not read
    probability[2, 13, 13] = 0.4  # 3x3 diagonal = 4.24 pixels away: not read
    probability[2, 12, 12] = 0.3  # sqrt(8) = 2.8 pixels away: read, but no lesion
    folder = tmp_path / "predictions" / "CT-1"
    write_image(Volume.from_array(lesions), folder / "lesions.nii.gz")
    write_image(Volume.from_array(probability), folder / "lesion_probability.nii.gz")
    marks = tmp_path / "marks.json"
    marks.write_text(json.dumps({"nodules": [
        {"case": "CT-1", "name": "n", "points": [[1, 10, 10], [2, 10, 10]]}]}))

    scored = validation.reader_marks(marks, tmp_path / "predictions")

    assert scored == [{"case": "CT-1", "name": "n", "slices": [1, 2], "found": [True, False],
                       "peak_probability": [0.9, 0.3]}]
