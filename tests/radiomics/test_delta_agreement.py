"""`livermets radiomics --tracking` and the agreement files, end to end on a generated cohort:
delta.csv links exactly `track`'s persistent pairs, with changes from features.csv; the
agreement of predicted masks (the references, one lesion dropped and one grown) with the
references; refusals of tracking folders that are not usable."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from livermets.cli import app
from livermets.radiomics.agreement import icc_3_1

runner = CliRunner()
VOLUME = "original_shape_VoxelVolume"


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _invoke(*args: str) -> tuple[int, dict, str]:
    result = runner.invoke(app, ["radiomics", *args])
    payload = json.loads(result.stdout) if result.stdout.strip().startswith("{") else {}
    return result.exit_code, payload, result.stderr


def test_delta_and_agreement(study: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "radiomics"
    code, summary, stderr = _invoke(
        "--manifest", str(study["manifest"]), "--out", str(out), "--params", str(study["params"]),
        "--predictions", str(study["predictions"]), "--tracking", str(study["track_reference"]),
        "--tracking", str(study["track_predicted"]), "--workers", "2")
    assert code == 0, stderr
    features = {(r["case_id"], r["mask_source"], r["lesion_id"]): r
                for r in _csv(out / "features.csv")}

    # delta.csv: exactly the persistent pairs of every matches.csv, per source.
    delta = _csv(out / "delta.csv")
    assert list(delta[0])[:6] == ["patient_id", "mask_source", "baseline_case_id",
                                  "baseline_lesion_id", "followup_case_id",
                                  "followup_lesion_id"]
    names = [c for c in next(iter(features.values())) if c.startswith("original_")]
    assert list(delta[0])[6:] == [f"{n}_{kind}" for n in names
                                  for kind in ("delta", "relative")] + ["note"]
    expected = []
    for source in ("reference", "predicted"):
        for matches in sorted(study[f"track_{source}"].glob("*/matches.csv")):
            patient = matches.parent.name
            expected += [(patient, source, f"{patient}_baseline", r["baseline_lesion_id"],
                          f"{patient}_tp1", r["followup_lesion_id"])
                         for r in _csv(matches) if r["status"] == "persistent"]
    assert [tuple(r[c] for c in list(r)[:6]) for r in delta] == expected
    assert len(expected) >= 10 and summary["delta_pairs"] == len(expected)
    computed = 0
    for row in delta:
        before = features[(row["baseline_case_id"], row["mask_source"],
                           row["baseline_lesion_id"])][VOLUME]
        after = features[(row["followup_case_id"], row["mask_source"],
                          row["followup_lesion_id"])][VOLUME]
        assert row["note"] == ""  # both lesions have a row in features.csv
        if not before or not after:  # one voxel thin at tp1: no features, no change
            assert row[f"{VOLUME}_delta"] == row[f"{VOLUME}_relative"] == ""
            continue
        change = float(after) - float(before)
        assert float(row[f"{VOLUME}_delta"]) == pytest.approx(change)
        assert float(row[f"{VOLUME}_relative"]) == pytest.approx(change / float(before))
        computed += 1
    assert computed >= len(delta) - 4

    # Agreement: every reference lesion pairs with its own id, except the dropped one.
    first = "synth001_baseline"
    references = [k for k in features if k[1] == "reference"]
    pairs = _csv(out / "cases" / first / "pairs.csv")
    own = sorted(int(k[2]) for k in references if k[0] == first)
    assert [int(p["reference_lesion_id"]) for p in pairs] == [i for i in own if i != 2]
    assert all(p["reference_lesion_id"] == p["predicted_lesion_id"] for p in pairs)
    agreement = {r["feature"]: r for r in _csv(out / "agreement.csv")}
    assert list(next(iter(agreement.values()))) == ["feature", "feature_class", "icc",
                                                    "ci_low", "ci_high", "n"]
    assert summary["agreement_pairs"] == len(references) - 1
    volume = agreement[VOLUME]
    # ICC from features.csv, lesion by lesion (identical masks but lesion 1 of the first CT),
    # over the lesions with a value (2 are one voxel thin).
    table = [(float(features[(c, "reference", i)][VOLUME]),
              float(features[(c, "predicted", i)][VOLUME]))
             for c, _, i in references
             if (c, i) != (first, "2") and features[(c, "reference", i)][VOLUME]]
    assert len(table) == len(references) - 3
    assert int(volume["n"]) == len(table) and volume["feature_class"] == "shape"
    independent = icc_3_1(table)
    assert 0.9 < float(volume["icc"]) < 1.0
    assert float(volume["icc"]) == pytest.approx(independent.icc, abs=1e-4)
    assert float(volume["ci_low"]) == pytest.approx(independent.ci_low, abs=1e-4)
    classes = {r["feature_class"]: r for r in _csv(out / "agreement_summary.csv")}
    assert set(classes) == {"shape", "firstorder"}
    shape = [r for r in agreement.values() if r["feature_class"] == "shape"]
    defined = [float(r["icc"]) for r in shape if r["icc"]]
    assert float(classes["shape"]["share_icc_0.9"]) == pytest.approx(
        round(sum(v >= 0.9 for v in defined) / len(defined), 4))
    record = json.loads((out / "radiomics.json").read_text())
    assert record["delta"]["pairs_by_source"] == {
        "reference": sum(e[1] == "reference" for e in expected),
        "predicted": sum(e[1] == "predicted" for e in expected)}
    assert record["agreement"]["lesion_pairs"] == len(references) - 1

    # Re-run without --tracking and --predictions: the now stale files go.
    code, _, stderr = _invoke("--manifest", str(study["manifest"]), "--out", str(out),
                              "--params", str(study["params"]))
    assert code == 0, stderr
    assert not (out / "delta.csv").exists() and not (out / "agreement.csv").exists()


def test_unusable_tracking_is_refused(study: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "radiomics"
    empty = tmp_path / "empty"
    empty.mkdir()
    base = ["--manifest", str(study["manifest"]), "--out", str(out), "--params",
            str(study["params"])]
    cases = [
        (["--tracking", str(tmp_path / "nowhere")], "no such folder"),
        (["--tracking", str(empty)], "holds no <patient>/matches.csv"),
        # Tracked on the predictions, which this run does not extract.
        (["--tracking", str(study["track_predicted"])], "is not one this run extracts"),
    ]
    for extra, message in cases:
        code, _, stderr = _invoke(*base, *extra)
        assert code == 2, extra
        assert stderr.startswith("error: ") and stderr.count("\n") == 1, stderr
        assert message in stderr
        assert not out.exists()
    broken = tmp_path / "broken"
    shutil.copytree(study["track_reference"], broken)
    next(broken.glob("*/response.json")).write_text("{")
    code, _, stderr = _invoke(*base, "--tracking", str(broken))
    assert code == 2 and "not `track`'s record" in stderr and not out.exists()
