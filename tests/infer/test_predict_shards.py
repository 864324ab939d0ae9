"""`livermets predict --shard K/N`, `--merge` and torchrun: the same case folders as one run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
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


@pytest.fixture(scope="module")
def single_run(tiny_runs: dict[str, Path], tiny_manifest: Path,
               tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """One process's predictions of the tiny cohort: its folder and its printed summary."""
    out = tmp_path_factory.mktemp("single") / "out"
    return out, _predict(tiny_manifest, tiny_runs, out)


def test_two_shards_and_merge_equal_one_run(tiny_runs: dict[str, Path], tiny_manifest: Path,
                                            single_run: tuple[Path, dict],
                                            tmp_path: Path) -> None:
    single_out, single = single_run
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
    assert_same_cases(single_out, sharded)


def _torchrun(manifest: Path, runs: dict[str, Path], out: Path) -> list[str]:
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    assert torchrun is not None
    return [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "livermets", "predict",
            "--manifest", str(manifest), "--out", str(out), "--liver-model", str(runs["liver"]),
            "--lesion-model", str(runs["lesion"])]


def _rank_pids(out: Path, rank: int) -> list[int]:
    """The processes of torchrun rank `rank` predicting into `out` (read from /proc)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if str(out).encode() in cmdline and f"RANK={rank}".encode() in environ \
                and any(v.startswith(b"TORCHELASTIC_RUN_ID=") for v in environ):
            pids.append(int(entry.name))
    return pids


@pytest.mark.slow
def test_torchrun_equals_one_run_and_a_killed_rank_is_finished_by_a_rerun(
        tiny_runs: dict[str, Path], tiny_manifest: Path, single_run: tuple[Path, dict],
        tmp_path: Path) -> None:
    single_out, single = single_run
    out = tmp_path / "ranks"
    command = _torchrun(tiny_manifest, tiny_runs, out)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # First run: rank 1 is killed once the first case has finished.
    first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    deadline = time.monotonic() + 240
    while not list(out.glob("*/run.json")) and time.monotonic() < deadline:
        time.sleep(0.2)
    victims = _rank_pids(out, 1)
    assert victims, "rank 1 not found"
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    _, err = first.communicate(timeout=120)
    assert first.returncode != 0, err[-2000:]
    finished = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("*/run.json")}
    assert 0 < len(finished) < len(single["cases"])
    # The same command again finishes the rest; no finished case is predicted again.
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    summary = json.loads(again.stdout)  # printed once, by rank 0
    assert summary["ranks"] == 2
    assert [c["case_id"] for c in summary["cases"]] == [c["case_id"] for c in single["cases"]]
    for case in summary["cases"]:
        assert case["status"] == ("skipped" if case["case_id"] in finished else "done")
    assert {p.parent.name: p.stat().st_mtime_ns for p in out.glob("*/run.json")
            if p.parent.name in finished} == finished
    assert_same_cases(single_out, out)


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


def test_a_rerun_removes_the_half_written_copies_a_killed_run_left(
        tiny_runs: dict[str, Path], tiny_manifest: Path, single_run: tuple[Path, dict],
        tmp_path: Path) -> None:
    single_out, single = single_run
    ids = [c["case_id"] for c in single["cases"]]
    out = tmp_path / "out"
    shutil.copytree(single_out, out)
    shutil.rmtree(out / ids[-1])  # the case being written when the process was killed
    left = [out / f".{ids[-1]}.k1ll3d_.partial", out / f".{ids[0]}.a8c_Zq.partial"]
    for folder in left:
        folder.mkdir()
        (folder / "liver.nii.gz").write_bytes(b"half")
    not_ours = out / f".{ids[0]}.b.a8c_Zq.partial"  # a case "<id>.b"'s, not <id>'s
    not_ours.mkdir()
    summary = _predict(tiny_manifest, tiny_runs, out)
    statuses = {c["case_id"]: c["status"] for c in summary["cases"]}
    assert statuses == {i: ("done" if i == ids[-1] else "skipped") for i in ids}
    assert not any(folder.exists() for folder in left)
    assert not_ours.is_dir()
    not_ours.rmdir()
    assert_same_cases(single_out, out)
