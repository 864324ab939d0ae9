"""`livermets report` on the hand-built evaluation of tests/evaluate: a self-contained page."""

from __future__ import annotations

import base64
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from livermets.cli import app
from tests.evaluate.test_evaluate import cohort  # noqa: F401  (the fixture)

runner = CliRunner()
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class _Page(HTMLParser):
    """Collects image sources, external references and table cells."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.external: list[str] = []
        self.cells: list[str] = []
        self._in_cell = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "img":
            self.images.append(values.get("src") or "")
        for key in ("src", "href"):
            if (values.get(key) or "").startswith(("http:", "https:", "file:", "//")):
                self.external.append(values[key] or "")
        self._in_cell = tag == "td"

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._in_cell = False

    def handle_data(self, data: str) -> None:
        if self._in_cell:
            self.cells.append(data.strip())


@pytest.fixture
def report_file(cohort: tuple[Path, Path], tmp_path: Path) -> Path:  # noqa: F811
    manifest, predictions = cohort
    evaluation = tmp_path / "eval"
    assert runner.invoke(app, ["evaluate", "--manifest", str(manifest), "--predictions",
                               str(predictions), "--out", str(evaluation)]).exit_code == 0
    out = tmp_path / "report.html"
    result = runner.invoke(app, ["report", str(evaluation), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_report_is_self_contained_with_filled_tables(report_file: Path) -> None:
    page = _Page()
    page.feed(report_file.read_text(encoding="utf-8"))
    # Two figures (Dice box plot, detection by size) and the three cases' pictures.
    assert len(page.images) == 5
    for source in page.images:
        assert source.startswith("data:image/png;base64,")
        assert base64.b64decode(source.split(",", 1)[1])[:8] == PNG_MAGIC
    assert page.external == []
    assert "67% (2/3) [0-100]" in page.cells  # valB's detection rate, as in tables.md
    assert "0.50 ± 0.50" in page.cells and "fisher" in page.cells
    assert all(cell != "" for cell in page.cells if cell is not None)
    text = report_file.read_text(encoding="utf-8")
    assert "p3_baseline, slice 1: 1 missed lesion(s)" in text  # missed lesions come first
    assert text.index("p3_baseline, slice") < text.index("p1_baseline, slice")


def test_study_report_opens_with_table_one_side_by_side(cohort: tuple[Path, Path],  # noqa: F811
                                                         tmp_path: Path) -> None:
    from livermets.report.build import build_report
    from livermets.study import compare_models

    manifest, predictions = cohort
    evaluations = {name: tmp_path / name for name in ("unet", "mobilenetv2-unet")}
    for folder in evaluations.values():
        assert runner.invoke(app, ["evaluate", "--manifest", str(manifest), "--predictions",
                                   str(predictions), "--out", str(folder)]).exit_code == 0
    comparisons = compare_models(evaluations)
    assert comparisons  # one row per set, both models scoring the same lesions
    out = build_report(list(evaluations.values()), tmp_path / "study.html", cases=0,
                       model_comparisons=comparisons,
                       model_notes=["TL: mobilenetv2-unet, ImageNet MobileNetV2 weights"])
    text = out.read_text(encoding="utf-8")
    # The paper's order: Table I (both models, tests beside), Table II, then the per-model
    # detail; the models are named above Table I.
    order = [text.index(h) for h in (
        "TL: mobilenetv2-unet, ImageNet", "<h2>Table I: per-lesion scores by set, unet vs "
        "mobilenetv2-unet</h2>", "<h2>Table II: by lesion size</h2>",
        "<h2>unet: comparisons", "<h2>mobilenetv2-unet: comparisons")]
    assert order == sorted(order)
    table = text[text.index('<table class="table-main">'):text.index("</table>", order[1])]
    page = _Page()
    page.feed(table)
    # Identical predictions: valB's detection twice in its row, then the tests (p = 1).
    row = next(r for r in table.split("<tr>") if r.startswith('<td class="name">valB<'))
    cells = [c.split("</td>")[0] for c in row.split("<td>")[1:]]
    assert cells.count("67% (2/3) [0-100]") == 2
    assert cells[-5] == "2 vs 2 of 3" and cells[-2:] == ["1", "1"]
    assert "-" in page.cells  # the "all" row has no model test


def test_report_refuses_what_is_not_an_evaluation(tmp_path: Path) -> None:
    result = runner.invoke(app, ["report", str(tmp_path), "--out", str(tmp_path / "r.html")])
    assert result.exit_code == 2 and "no summary.json" in result.stderr
    assert not (tmp_path / "r.html").exists()


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make test "
                    "installs it where it runs as root with apt-get)")
def test_report_renders_in_headless_chromium(report_file: Path, tmp_path: Path) -> None:
    # A copy whose script counts, after loading, the images the browser actually decoded.
    probe = tmp_path / "probe.html"
    probe.write_text(report_file.read_text(encoding="utf-8").replace(
        "</body>", "<script>window.addEventListener('load', () => { document.body.dataset"
        ".decoded = [...document.images].filter(i => i.complete && i.naturalWidth > 0)"
        ".length; });</script></body>"), encoding="utf-8")
    common = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu",
              "--virtual-time-budget=5000"]
    dom = subprocess.run([*common, "--dump-dom", probe.as_uri()], capture_output=True,
                         text=True, timeout=120, check=True).stdout
    assert 'data-decoded="5"' in dom
    screenshot = tmp_path / "shot.png"
    subprocess.run([*common, f"--screenshot={screenshot}", "--window-size=1200,2000",
                    report_file.as_uri()], capture_output=True, timeout=120, check=True)
    assert screenshot.read_bytes()[:8] == PNG_MAGIC and screenshot.stat().st_size > 20_000
