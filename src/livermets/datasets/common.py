"""What every importer shares: the output folder rule, writing one case, and the summary."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from livermets.errors import InputError
from livermets.io import Volume, write_image
from livermets.io.atomic import write_text_atomic
from livermets.io.manifest import ManifestRow, write_manifest
from livermets.io.safe_paths import check_out_folder, make_folder
from livermets.labels import connected_components
from livermets.types import PathLike

logger = logging.getLogger(__name__)

#: Components of a reference lesion mask smaller than this are annotation specks, not lesions.
MIN_LESION_VOLUME_MM3 = 10.0


@dataclass
class ImportedCase:
    """One imported CT (or masks-only case): what was found and written."""

    patient_id: str
    timepoint: str = "baseline"
    image: str = ""
    liver_mask: str = ""
    lesion_mask: str = ""
    lesions: int = 0
    lesion_volumes_ml: list[float] = field(default_factory=list)
    in_manifest: bool = True
    notes: list[str] = field(default_factory=list)


@dataclass
class ImportResult:
    """The importer's outcome: the manifest written and every case, with notes."""

    format: str
    source: str
    manifest: Path | None
    cases: list[ImportedCase]

    @property
    def rows(self) -> int:
        """Number of CTs in the manifest."""
        return sum(case.in_manifest for case in self.cases)

    @property
    def lesions(self) -> int:
        """Number of reference lesions over the manifest's CTs."""
        return sum(case.lesions for case in self.cases if case.in_manifest)

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON summary (also written to `import.json` beside the manifest)."""
        return {"format": self.format, "source": self.source,
                "manifest": str(self.manifest) if self.manifest else None,
                "rows": self.rows, "lesions": self.lesions,
                "cases": [asdict(case) for case in self.cases]}


@contextmanager
def import_folder(out_dir: PathLike, *, overwrite: bool) -> Iterator[Path]:
    """The output folder of an import, created; an existing manifest there is refused unless
    `overwrite`. When the import fails, what it added to the folder is removed again (the
    folder itself when the import created it), so a refused import leaves nothing behind."""
    out = Path(out_dir)
    check_out_folder(out)
    if (out / "manifest.csv").exists() and not overwrite:
        raise InputError(f"{out} already holds a manifest.csv; choose another --out or pass "
                         "--overwrite")
    before = set(out.iterdir()) if out.is_dir() else None
    make_folder(out)
    try:
        yield out
    except BaseException:
        added = list(out.iterdir()) if before is None else \
            [p for p in out.iterdir() if p not in before]
        for path in added:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        if before is None:
            out.rmdir()
        raise


def write_mask(volume: Volume, array: np.ndarray, path: Path) -> str:
    """Write a mask on `volume`'s grid; returns the path as a string for the summary."""
    write_image(volume.with_array(array), path)
    return str(path)


def lesion_volumes_ml(labels: np.ndarray, volume: Volume) -> list[float]:
    """Volume in mL of each label 1..K of an instance map on `volume`'s grid."""
    counts = np.bincount(labels.ravel().astype(np.int64))[1:]
    return [round(float(c) * volume.geometry.voxel_volume_ml, 3) for c in counts if c]


def finish_import(fmt: str, source: PathLike, out: Path, cases: Sequence[ImportedCase],
                  rows: Sequence[ManifestRow]) -> ImportResult:
    """Write `manifest.csv` (when some case has a CT) and `import.json`; return the result."""
    manifest = write_manifest(rows, out / "manifest.csv") if rows else None
    if manifest is None:
        logger.warning("%s: no case with a CT; masks written to %s, no manifest", source, out)
    result = ImportResult(fmt, str(source), manifest, list(cases))
    write_text_atomic(out / "import.json", json.dumps(result.to_json(), indent=2) + "\n")
    logger.info("%s import: %d CT(s), %d lesion(s) -> %s", fmt, result.rows, result.lesions,
                manifest)
    return result


def add_lesion_components(union: np.ndarray | None, mask: np.ndarray) -> np.ndarray:
    """Add the connected components of one lesion structure (`mask > 0`, shape (z, y, x)) to
    a running int32 instance map as new labels; voxels already labelled keep their label.

    Returns the updated map (a new one when `union` is None). Renumber it at the end with
    `livermets.labels.instance_labels`.
    """
    components, _ = connected_components(mask)
    if union is None:
        return components
    new = (union == 0) & (components > 0)
    union[new] = components[new] + int(union.max())
    return union
