"""The study's radiomics stage on a study folder's layout (reference masks, `predictions/unet`,
`track/{reference,unet}`), without training: its files, and the report's radiomics section."""

from __future__ import annotations

import csv
import json
from html.parser import HTMLParser
from pathlib import Path

from livermets.evaluate.run import evaluate_manifest
from livermets.io.manifest import read_manifest
from livermets.report.build import build_report
from livermets.study import StudySettings, radiomics_stage
from tests.radiomics.study_cohort import study  # noqa: F401  (the fixture)

SUBSET = {"imageType": {"Original": {}}, "featureClass": {"shape": [], "firstorder": []},
          "setting": {"resampledPixelSpacing": [1.0, 1.0, 1.0], "interpolator": "sitkBSpline",
                      "binWidth": 25}}


class _Tables(HTMLParser):
    """The rows (cell texts) of each table, by the table's class."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._table: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._table = dict(attrs).get("class") or ""
            self.tables.setdefault(self._table, [])
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
        elif tag == "td":
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None and self._table is not None:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def test_radiomics_stage_and_report_section(study: dict[str, Path],  # noqa: F811
                                            tmp_path: Path) -> None:
    root, manifest = study["root"], study["manifest"]
    said: list[str] = []
    settings = StudySettings(radiomics_params=SUBSET, radiomics_workers=1)
    record = radiomics_stage(manifest, root, read_manifest(manifest), settings, said.append)
    assert record is not None and record["failed"] == [] and record["predicted"] == "unet"
    out = root / "radiomics"
    assert record["folder"] == str(out)
    features = list(csv.DictReader((out / "features.csv").open()))
    references = sum(r["mask_source"] == "reference" for r in features)
    # The predictions are the references, one lesion dropped: all other lesions pair.
    assert record["agreement_pairs"] == references - 1
    tracked = sum(r["status"] == "persistent" for folder in ("reference", "unet")
                  for path in (root / "track" / folder).glob("*/matches.csv")
                  for r in csv.DictReader(path.open()))
    assert record["delta_pairs"] == tracked > 0
    assert any("delta over the tracked pairs" in line for line in said)

    # Off, or without any reference mask: skipped, nothing written.
    assert radiomics_stage(manifest, root, [], settings, said.append) is None
    assert radiomics_stage(manifest, root, read_manifest(manifest),
                           StudySettings(radiomics=False), said.append) is None

    evaluation = evaluate_manifest(manifest, study["predictions"], tmp_path / "eval").out
    report = build_report([evaluation], tmp_path / "report.html", cases=0, radiomics=out)
    html = report.read_text()
    assert "Radiomics: robustness of the features to automatic segmentation" in html
    assert 'alt="ICC per feature class"' in html and "data:image/png;base64," in html
    page = _Tables()
    page.feed(html)
    agreement = [r for r in csv.DictReader((out / "agreement.csv").open()) if r["icc"]]
    ranked = sorted(agreement, key=lambda r: (-float(r["icc"]), r["feature"]))
    most, least = page.tables["table-icc-features"][1:6], page.tables["table-icc-features"][7:]
    assert [row[0] for row in most] == [r["feature"] for r in ranked[:5]]
    assert [row[0] for row in least] == [r["feature"] for r in ranked[::-1][:5]]
    assert least[0][2] == f"{float(ranked[-1]['icc']):.3f}"
    classes = {row[0]: row for row in page.tables["table-icc-classes"][1:]}
    summary = {r["feature_class"]: r for r in csv.DictReader(
        (out / "agreement_summary.csv").open())}
    assert set(classes) == set(summary) == {"shape", "firstorder"}
    share = float(summary["firstorder"]["share_icc_0.9"])
    assert classes["firstorder"][4] == f"{100 * share:.0f}%"
    assert json.loads((out / "radiomics.json").read_text())["agreement"]["lesion_pairs"] == (
        references - 1)
