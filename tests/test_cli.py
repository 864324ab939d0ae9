"""The command line in-process: JSON output, exit codes, one-line errors, nothing half-written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from livermets.cli import app
from livermets.config import TCMALLOC_PATHS, tcmalloc_relaunch
from livermets.io import Volume, read_image, write_image

runner = CliRunner()


def _ct(path: Path) -> Path:
    array = np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4) - 10
    return write_image(Volume.from_array(array, spacing=(5.0, 0.5, 0.75),
                                         origin=(1.0, 2.0, 3.0)), path)


def _error_line(result: object) -> str:
    out = result.stderr  # type: ignore[attr-defined]
    assert out.count("\n") == 1 and out.startswith("error: "), out
    return out


def test_info_prints_the_contract_json(tmp_path: Path) -> None:
    result = runner.invoke(app, ["info", str(_ct(tmp_path / "ct.nii.gz"))])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["shape"] == [2, 3, 4]
    assert info["spacing"] == [5.0, 0.5, 0.75]
    assert info["origin"] == [1.0, 2.0, 3.0]
    assert info["direction"] == [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    assert (info["dtype"], info["min"], info["max"], info["format"]) == ("int16", -10, 13, "nifti")


@pytest.mark.shared_data
def test_info_on_a_dicom_folder(shared_data: Path) -> None:
    result = runner.invoke(app, ["info", str(shared_data / "crlm" / "CRLM-CT-1004")])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["shape"] == [41, 512, 512]
    assert info["spacing"] == pytest.approx([5.0, 0.796875, 0.796875])
    assert info["origin"] == pytest.approx([-198.2, -204.0, -375.0], abs=1e-3)
    assert info["format"] == "dicom" and info["series_instance_uid"].startswith("1.3.6.1.4.1")


def test_convert_keeps_geometry_and_refuses_overwrite(tmp_path: Path) -> None:
    source = _ct(tmp_path / "ct.nii.gz")
    target = tmp_path / "ct.nrrd"
    result = runner.invoke(app, ["convert", str(source), str(target)])
    assert result.exit_code == 0, result.output
    back, original = read_image(target), read_image(source)
    assert back.geometry == original.geometry
    np.testing.assert_array_equal(back.array, original.array)
    before = target.read_bytes()
    result = runner.invoke(app, ["convert", str(source), str(target)])
    assert result.exit_code == 2 and "--overwrite" in _error_line(result)
    assert target.read_bytes() == before
    result = runner.invoke(app, ["convert", str(source), str(source), "--overwrite"])
    assert result.exit_code == 2 and "the input itself" in _error_line(result)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["info", "{tmp}/missing.nii.gz"], "no such file"),
        (["info", "{tmp}/notes.txt"], "unsupported file type"),
        (["info", "{tmp}/broken.nii.gz"], "not a readable NIfTI"),
        (["info", "{tmp}/empty_dir"], "DICOM"),
        (["convert", "{tmp}/broken.nii.gz", "{tmp}/out.nrrd"], "not a readable NIfTI"),
        (["convert", "{tmp}/ct.nii.gz", "{tmp}/out.png"], "cannot write"),
        (["import", "msd", "{tmp}/empty_dir", "--out", "{tmp}/imp"], "no imagesTr"),
        (["import", "ircadb", "{tmp}/empty_dir", "--out", "{tmp}/imp"], "no 3D-IRCADb-01"),
        (["train", "--manifest", "{tmp}/none.csv", "--task", "liver", "--out", "{tmp}/run"],
         "manifest not found"),
        (["train", "--manifest", "{tmp}/notes.txt", "--task", "liver", "--out", "{tmp}/run"],
         "unknown column"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    _ct(tmp_path / "ct.nii.gz")
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "broken.nii.gz").write_text("garbage")
    (tmp_path / "empty_dir").mkdir()
    before = sorted(p.name for p in tmp_path.iterdir())
    result = runner.invoke(app, [a.format(tmp=tmp_path) for a in args])
    assert result.exit_code == 2, result.output
    assert message in _error_line(result)
    assert "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


def test_usage_errors_exit_2() -> None:
    result = runner.invoke(app, ["import", "nifti", "x", "--out", "y"])
    assert result.exit_code == 2 and "is not one of" in result.output


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.startswith("livermets ")


def test_tcmalloc_relaunch_environment(tmp_path: Path) -> None:
    library = tmp_path / "libtcmalloc_minimal.so.4"
    library.write_bytes(b"")
    missing = str(tmp_path / "nothing.so")
    env = tcmalloc_relaunch({"PATH": "/bin", "LD_PRELOAD": "/x/libother.so"},
                            [missing, str(library)])
    assert env == {"PATH": "/bin", "LD_PRELOAD": f"{library} /x/libother.so",
                   "LIVERMETS_TCMALLOC": "0"}
    assert tcmalloc_relaunch(env, [str(library)]) is None  # never twice
    assert tcmalloc_relaunch({"LIVERMETS_TCMALLOC": "0"}, [str(library)]) is None
    assert tcmalloc_relaunch({}, [missing]) is None


@pytest.mark.skipif(not any(Path(p).is_file() for p in TCMALLOC_PATHS),
                    reason="tcmalloc is not installed (Debian: libtcmalloc-minimal4)")
def test_the_command_runs_with_tcmalloc_unless_turned_off() -> None:
    command = [str(Path(sys.executable).with_name("livermets")), "--version"]
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "LIVERMETS_TCMALLOC")}
    on = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    assert on.stdout.strip().endswith("(allocator: tcmalloc)")
    off = subprocess.run(command, capture_output=True, text=True, check=True,
                         env={**env, "LIVERMETS_TCMALLOC": "0"})
    assert off.stdout.strip().endswith("(allocator: system)")
