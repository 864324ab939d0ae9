"""`livermets predict --shard K/N`, `--merge` and torchrun: the same case folders as one run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from livermets.cli import app
from livermets.io.image import read_image
from livermets.io.manifest import read_manifest

runner = CliRunner()
MASKS = ("liver.nii.gz", "lesions.nii.gz", "lesion_probability.nii.gz")


def _predict(manifest: Path, runs: dict[str, Path], out: Path, *extra: str) -> dict:
    result = runner.invoke(app, ["predict", "--manifest", str(manifest), "--out", str(out),
                                 "--liver-model", str(runs["liver"]),
                                 "--lesion-model", str(runs["lesion"]), *extra])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def assert_same_cases(one: Path, other: Path) -> None:
    """The same case folders, masks equal voxel for voxel and lesion tables equal."""
    names = sorted(p.name for p in one.iterdir())
    assert names and names == sorted(p.name for p in other.iterdir())
    for name in names:
        for mask in MASKS:
            np.testing.assert_array_equal(read_image(one / name / mask).array,
                                          read_image(other / name / mask).array)
        assert (one / name / "lesions.csv").read_text() == \
            (other / name / "lesions.csv").read_text()


def test_two_shards_and_merge_equal_one_run(tiny_runs: dict[str, Path], tiny_manifest: Path,
                                            tmp_path: Path) -> None:
    single = _predict(tiny_manifest, tiny_runs, tmp_path / "single")
    ids = [c["case_id"] for c in single["cases"]]
    sharded = tmp_path / "sharded"
    first = _predict(tiny_manifest, tiny_runs, sharded, "--shard", "1/2")
    # Before the second share: the merge lists its cases as missing, exit code 2.
    early = runner.invoke(app, ["predict", "--manifest", str(tiny_manifest), "--merge",
                                "--out", str(sharded)])
    assert early.exit_code == 2
    missing = {c["case_id"] for c in json.loads(early.stdout)["cases"]
               if c["status"] == "missing"}
    second = _predict(tiny_manifest, tiny_runs, sharded, "--shard", "2/2")
    assert first["shard"] == "1/2" and second["shard"] == "2/2"
    mine = [[c["case_id"] for c in s["cases"]] for s in (first, second)]
    # Sorted ids dealt out in turn: 4 and 4, each in manifest order, none in both.
    assert mine[0] == [i for i in ids if i in sorted(ids)[0::2]]
    assert mine[1] == [i for i in ids if i in sorted(ids)[1::2]] and missing == set(mine[1])
    assert all(c["status"] == "done" for s in (first, second) for c in s["cases"])
    merged = runner.invoke(app, ["predict", "--manifest", str(tiny_manifest), "--merge",
                                 "--out", str(sharded)])
    assert merged.exit_code == 0, merged.output
    summary = json.loads(merged.stdout)
    assert [c["case_id"] for c in summary["cases"]] == ids
    assert [c["lesions"] for c in summary["cases"]] == [c["lesions"] for c in single["cases"]]
    assert {c["status"] for c in summary["cases"]} == {"done"}
    assert_same_cases(tmp_path / "single", sharded)


def test_merge_reports_a_half_written_case(tiny_manifest: Path, tmp_path: Path) -> None:
    first = read_manifest(tiny_manifest)[0].case_id
    out = tmp_path / "out"
    out.mkdir()
    (out / f".{first}.x1y2.partial").mkdir()  # left by a killed process
    result = runner.invoke(app, ["predict", "--manifest", str(tiny_manifest), "--merge",
                                 "--out", str(out)])
    assert result.exit_code == 2
    statuses = {c["case_id"]: c["status"] for c in json.loads(result.stdout)["cases"]}
    assert statuses.pop(first) == "unfinished"
    assert set(statuses.values()) == {"missing"}


@pytest.mark.parametrize(("extra", "message"), [
    (["--shard", "3/2"], "write K/N"),
    (["--shard", "0/2"], "write K/N"),
    (["--shard", "1of2"], "write K/N"),
    (["--shard", "1/2", "--merge"], "--merge runs alone"),
])
def test_bad_shards_are_one_line_and_exit_2(tiny_manifest: Path, tmp_path: Path,
                                            extra: list[str], message: str) -> None:
    result = runner.invoke(app, ["predict", "--manifest", str(tiny_manifest),
                                 "--out", str(tmp_path / "out"), *extra])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert message in result.stderr
    assert not (tmp_path / "out").exists()


def test_shard_needs_a_cohort(tmp_path: Path) -> None:
    ct = tmp_path / "ct.nii.gz"
    ct.write_bytes(b"")
    result = runner.invoke(app, ["predict", str(ct), "--shard", "1/2",
                                 "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "give --manifest or several CTs" in result.stderr
    assert not (tmp_path / "out").exists()
