"""Time of writing seg.dcm, old (highdicom's `Segmentation`) against new (pydicom), and the
import time of the predict path's modules, old against new.

Old: the `src` tree of a git revision (default: eeb9f96, main's last commit that wrote seg.dcm
with highdicom); new: this
working tree's `src`; both copied to one temporary folder (same file system), and both imported
once before measuring (Python compiles them then). The CT is 3D-IRCADb-01 1.17 (DICOM, 119 x
512 x 512, from ../shared/data), the masks a liver ellipsoid (81 slices) holding two metastases
(13 and 9 slices), written as `predict` writes them (liver and metastases, 81 + 22 frames).

Each measurement runs in a fresh Python process, as `livermets predict` of one CT does: the
time of the first `write_dicom_seg` call after the CT was read (for old it includes importing
highdicom and loading its tables of the standard, as it did in `predict`; the second call's time
is printed too: what each further case of a cohort run paid), and the
time of `import livermets.infer.outputs, livermets.io.dicom_seg`. Old and new alternate
(old first in odd repeats, new first in even ones), `--repeats` times each; the medians are
printed last. Usage, from the repository root:
    nice -n 10 .venv/bin/python benchmarks/seg_write_speed.py [--old-rev REV] [--repeats 3]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
#: main's last commit whose `write_dicom_seg` built the SEG with highdicom.
HIGHDICOM_WRITER = "eeb9f96"
CT = REPO.parent / "shared" / "data" / "ircadb" / "3Dircadb1.17" / "PATIENT_DICOM"


def write_once(out: Path) -> dict[str, Any]:
    """In a child: read the CT, build the masks, time one `write_dicom_seg`."""
    import numpy as np

    from livermets.io import read_image
    from livermets.io.dicom_seg import liver_segment, metastases_segment, write_dicom_seg

    ct = read_image(CT)
    z, y, x = np.indices(ct.shape)

    def ellipsoid(centre: tuple[int, int, int], radii: tuple[int, int, int]) -> Any:
        d = sum(((a - c) / r) ** 2 for a, c, r in zip((z, y, x), centre, radii, strict=True))
        return d <= 1.0

    lesions = ellipsoid((50, 240, 150), (6, 10, 10)) | ellipsoid((75, 270, 220), (4, 7, 7))
    liver = (ellipsoid((60, 250, 180), (40, 80, 100)) | lesions).astype(np.uint8)
    segments = [liver_segment(liver), metastases_segment(lesions)]
    seconds = []
    for _ in range(2):
        started = time.perf_counter()
        write_dicom_seg(out, segments, ct)
        seconds.append(time.perf_counter() - started)
    return {"seconds": seconds[0], "second_call_seconds": seconds[1],
            "bytes": out.stat().st_size, "file": sys.modules[write_dicom_seg.__module__].__file__}


def import_once() -> dict[str, Any]:
    """In a child: time importing the modules `predict` writes its outputs with."""
    started = time.perf_counter()
    import livermets.infer.outputs
    import livermets.io.dicom_seg  # noqa: F401

    return {"seconds": time.perf_counter() - started,
            "highdicom_imported": "highdicom" in sys.modules}


def child(kind: str, src: Path, out: Path) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter on the package in `src`."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    command = [sys.executable, __file__, "--child", kind, "--out", str(out)]
    done = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def extract_src(revision: str, into: Path) -> str:
    """`src` of `revision` extracted under `into`; returns the commit."""
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", revision], check=True,
                            capture_output=True, text=True).stdout.strip()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", commit, "src"], check=True,
                             capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return commit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old-rev", default=HIGHDICOM_WRITER,
                        help="git revision of the old code (default: the last with highdicom)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", choices=["write", "import"], help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "write":
        print(json.dumps(write_once(args.out)))
        return
    if args.child == "import":
        print(json.dumps(import_once()))
        return
    revision = args.old_rev
    with tempfile.TemporaryDirectory() as tmp:
        commit = extract_src(revision, Path(tmp) / "old")
        shutil.copytree(REPO / "src", Path(tmp) / "new" / "src",
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        trees = {"old": Path(tmp) / "old" / "src", "new": Path(tmp) / "new" / "src"}
        print(f"old: {commit[:10]} ({revision}); new: {REPO / 'src'} (working tree)")
        for src in trees.values():  # compile both once
            child("import", src, Path(tmp) / "warm-up")
        results: dict[tuple[str, str], list[float]] = {}
        for repeat in range(1, args.repeats + 1):
            order = list(trees.items()) if repeat % 2 else list(trees.items())[::-1]
            for kind in ("write", "import"):
                for version, src in order:
                    result = child(kind, src, Path(tmp) / f"{version}-{repeat}.dcm")
                    results.setdefault((kind, version), []).append(result["seconds"])
                    print(json.dumps({"repeat": repeat, "measure": kind, "version": version,
                                      **result}))
    for (kind, version), seconds in results.items():
        print(f"{kind:6s} {version}: median {statistics.median(seconds):.3f} s "
              f"({', '.join(f'{s:.3f}' for s in seconds)})")


if __name__ == "__main__":
    main()
