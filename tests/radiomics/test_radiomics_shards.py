"""`livermets radiomics --shard K/N`, `--merge` and torchrun: the same cohort files as one run.

On the package's `study` cohort (conftest: 2 patients x 2 time points, 64 x 64 x 24, reference
and predicted masks, `track` on both), so that features.csv, delta.csv and agreement.csv are all
written; shape and first-order features on each CT's own grid (fast).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from livermets.cli import app
from livermets.radiomics.run import job_threads

runner = CliRunner()
#: Shape and first-order features on each CT's own grid (no resampling: fast).
PARAMS = """\
imageType: {Original: {}}
featureClass: {shape: [], firstorder: []}
setting: {binWidth: 25}
"""
#: The cohort's files, equal whether written by one run, a merge of shares or torchrun's rank 0.
COHORT_FILES = ("features.csv", "delta.csv", "agreement.csv", "agreement_summary.csv")


@pytest.fixture(scope="module")
def cohort(study: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The study cohort with this module's fast settings."""
    params = tmp_path_factory.mktemp("params") / "params.yaml"
    params.write_text(PARAMS)
    return {**study, "params": params}


def _args(cohort: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return ["radiomics", "--manifest", str(cohort["manifest"]), "--out", str(out),
            "--predictions", str(cohort["predictions"]),
            "--tracking", str(cohort["track_reference"]),
            "--tracking", str(cohort["track_predicted"]), "--params", str(cohort["params"]),
            *extra]


def _invoke(cohort: dict[str, Path], out: Path, *extra: str, code: int = 0) -> dict:
    result = runner.invoke(app, _args(cohort, out, *extra))
    assert result.exit_code == code, result.output
    return json.loads(result.stdout)


def assert_same_cohort_files(one: Path, other: Path) -> None:
    """The cohort's files and every CT's per-case files equal, byte for byte."""
    for name in COHORT_FILES:
        assert (one / name).read_text() == (other / name).read_text(), name
    cases = sorted(p.relative_to(one) for p in (one / "cases").glob("*/*.csv"))
    assert cases == sorted(p.relative_to(other) for p in (other / "cases").glob("*/*.csv"))
    for case in cases:
        assert (one / case).read_text() == (other / case).read_text(), case


@pytest.fixture(scope="module")
def single_run(cohort: dict[str, Path],
               tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """One process's radiomics of the cohort: its folder and its printed summary."""
    out = tmp_path_factory.mktemp("single") / "out"
    summary = _invoke(cohort, out)
    assert summary["agreement_pairs"] and summary["delta_pairs"]
    return out, summary


def test_two_shards_and_merge_equal_one_run(cohort: dict[str, Path],
                                            single_run: tuple[Path, dict],
                                            tmp_path: Path) -> None:
    single_out, single = single_run
    jobs = [(c["case_id"], c["source"]) for c in single["cases"]]
    ids = list(dict.fromkeys(case_id for case_id, _ in jobs))
    out = tmp_path / "sharded"
    first = _invoke(cohort, out, "--shard", "1/2")
    assert first["shard"] == "1/2"
    # A share writes only its CTs' files: no cohort file, no other CT's folder.
    assert not any((out / name).exists() for name in COHORT_FILES)
    assert sorted(p.name for p in (out / "cases").iterdir()) == sorted(ids)[0::2]
    assert json.loads((out / "radiomics.json").read_text())["status"] == "running"
    # Before the second share: the merge lists its CTs as missing, exit code 2.
    early = _invoke(cohort, out, "--merge", code=2)
    missing = {c["case_id"] for c in early["cases"] if c["status"] == "missing"}
    second = _invoke(cohort, out, "--shard", "2/2")
    mine = [[(c["case_id"], c["source"]) for c in s["cases"]] for s in (first, second)]
    # The CTs as predict --shard deals them (sorted ids in turn), both sources together.
    assert mine[0] == [j for j in jobs if j[0] in sorted(ids)[0::2]]
    assert mine[1] == [j for j in jobs if j[0] in sorted(ids)[1::2]]
    assert missing == {case_id for case_id, _ in mine[1]}
    assert all(c["status"] == "done" for s in (first, second) for c in s["cases"])
    merged = _invoke(cohort, out, "--merge")
    assert [(c["case_id"], c["source"]) for c in merged["cases"]] == jobs
    assert {c["status"] for c in merged["cases"]} == {"done"}
    assert [c["lesions"] for c in merged["cases"]] == [c["lesions"] for c in single["cases"]]
    for key in ("lesions", "delta_pairs", "agreement_pairs"):
        assert merged[key] == single[key]
    assert_same_cohort_files(single_out, out)
    record = json.loads((out / "radiomics.json").read_text())
    assert record["status"] == "finished" and record["merged"] is True
    # The next unsharded run finds every CT finished, skips them, writes the same files.
    (out / "features.csv").unlink()
    again = _invoke(cohort, out)
    assert {c["status"] for c in again["cases"]} == {"skipped"}
    assert_same_cohort_files(single_out, out)


@pytest.mark.slow
def test_torchrun_equals_one_run(cohort: dict[str, Path], single_run: tuple[Path, dict],
                                 tmp_path: Path) -> None:
    single_out, single = single_run
    out = tmp_path / "ranks"
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    assert torchrun is not None
    command = [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "livermets",
               *_args(cohort, out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout)  # printed once, by rank 0
    assert summary["ranks"] == 2
    assert summary["cases"] == [c | {"seconds": s["seconds"]}
                                for c, s in zip(single["cases"], summary["cases"], strict=True)]
    assert_same_cohort_files(single_out, out)
    record = json.loads((out / "radiomics.json").read_text())
    assert record["status"] == "finished" and record["ranks"] == 2


@pytest.mark.parametrize(("extra", "message"), [
    (["--shard", "3/2"], "write K/N"),
    (["--shard", "0/2"], "write K/N"),
    (["--shard", "1/2", "--merge"], "--merge runs alone"),
    (["--merge", "--redo"], "leave out --redo"),
])
def test_bad_shards_are_one_line_and_exit_2(cohort: dict[str, Path], tmp_path: Path,
                                            extra: list[str], message: str) -> None:
    result = runner.invoke(app, _args(cohort, tmp_path / "out", *extra))
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert message in result.stderr
    assert not (tmp_path / "out").exists()


def test_workers_and_threads_fit_the_cores() -> None:
    assert job_threads(1, None) is None  # SimpleITK's default: every core
    assert job_threads(2, None) == 1
    assert [job_threads(w, 4) for w in (1, 2, 3, 4)] == [4, 2, 1, 1]
    assert job_threads(1, 1) == 1
