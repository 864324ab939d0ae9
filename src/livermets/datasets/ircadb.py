"""Import 3D-IRCADb-01 patients: DICOM CT and per-structure DICOM masks -> NIfTI + manifest.

Layout of one patient folder: `PATIENT_DICOM/` (the CT series) and `MASKS_DICOM/` or
`MASKS_DICOM.zip` holding one DICOM series per structure (`MASKS_DICOM/<structure>/image_N`),
on the CT's grid, a voxel inside where its value is > 0. SOURCE is one patient folder or a
folder holding patient folders (searched two levels down).

Which structures are what (names compared in lower case):
- liver: `liver`.
- lesions: `livertumor*` (`livertumor`, `livertumor1`, `livertumor01`, `livertumors`, ...) and
  `metastasectomie`. Every one is split into 26-connected components; each component is its own
  lesion (IRCADb's `livertumors` holds many tumours in one mask); components under 10 mm3 are
  annotation specks and are dropped. Lesions are numbered 1..K by decreasing volume.
- not lesions: cysts (`liverkyste`, `livercyst`), tumours of other organs (`*surretumor`) and
  a bare `tumor` (in 3D-IRCADb-01 1.7 it is an adrenal/renal mass outside the liver), and every
  other structure (vessels, organs, bones).

Patients with masks but no `PATIENT_DICOM/` (masks-only) get their masks written and appear in
`import.json`, but not in the manifest, which needs a CT.
Outputs: `OUT/<patient>/ct.nii.gz` (int16 HU), `liver.nii.gz` (0/1), `lesions.nii.gz`
(instance labels), `OUT/manifest.csv` (timepoint baseline, centre IRCAD), `OUT/import.json`.
"""

from __future__ import annotations

import logging
import re
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np

from livermets.datasets.common import (
    MIN_LESION_VOLUME_MM3,
    ImportedCase,
    ImportResult,
    add_lesion_components,
    finish_import,
    import_folder,
    lesion_volumes_ml,
    write_mask,
)
from livermets.errors import InputError
from livermets.io import Volume, read_image, write_image
from livermets.io.manifest import ManifestRow
from livermets.io.safe_paths import child_folder, name_from_input
from livermets.labels import instance_labels
from livermets.types import PathLike

logger = logging.getLogger(__name__)

LIVER_STRUCTURE = "liver"
_LESION = re.compile(r"^(livertumou?r.*|metastasectomie)$")
CENTER = "IRCAD"


def is_lesion_structure(name: str) -> bool:
    """True for the IRCADb structure names that are liver lesions (see the module docstring)."""
    return bool(_LESION.match(name.lower()))


def _is_patient(folder: Path) -> bool:
    return any((folder / n).exists()
               for n in ("PATIENT_DICOM", "MASKS_DICOM", "MASKS_DICOM.zip"))


def find_patients(source: Path) -> list[Path]:
    """Patient folders at SOURCE or up to two levels below it, in natural name order."""
    if _is_patient(source):
        return [source]
    found = [d for d in source.glob("*") if d.is_dir() and _is_patient(d)]
    found += [d for d in source.glob("*/*") if d.is_dir() and _is_patient(d)]
    return sorted(found, key=_natural_key)


def _natural_key(path: Path) -> list[object]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


class _Masks:
    """Access to a patient's per-structure mask series, from a folder or a zip."""

    def __init__(self, patient: Path, scratch: Path) -> None:
        self.folder = patient / "MASKS_DICOM"
        self.archive = patient / "MASKS_DICOM.zip"
        self.scratch = scratch
        if not self.folder.is_dir() and not self.archive.is_file():
            raise InputError(f"{patient} has no MASKS_DICOM/ or MASKS_DICOM.zip")

    def structures(self) -> list[str]:
        if self.folder.is_dir():
            return sorted(d.name for d in self.folder.iterdir() if d.is_dir())
        try:
            with zipfile.ZipFile(self.archive) as archive:
                names = archive.namelist()
        except zipfile.BadZipFile as exc:
            raise InputError(f"{self.archive} is not a readable zip file; re-download it") from exc
        return sorted({parts[1] for parts in (n.split("/") for n in names)
                       if len(parts) >= 3 and parts[0] == "MASKS_DICOM" and parts[1]})

    def read(self, structure: str) -> Volume:
        if self.folder.is_dir():
            return read_image(self.folder / structure)
        prefix = f"MASKS_DICOM/{structure}/"
        try:
            with zipfile.ZipFile(self.archive) as archive:
                members = [n for n in archive.namelist() if n.startswith(prefix) and n != prefix]
                archive.extractall(self.scratch, members)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
            raise InputError(f"{self.archive} is damaged ({exc}); re-download it") from None
        return read_image(self.scratch / "MASKS_DICOM" / structure)


def import_ircadb(source: PathLike, out_dir: PathLike, *, overwrite: bool = False) -> ImportResult:
    """Import one 3D-IRCADb-01 patient folder or a folder of them (see the module docstring)."""
    src = Path(source)
    if not src.is_dir():
        raise InputError(f"{src}: not a folder; give a 3D-IRCADb-01 patient folder (with "
                         "PATIENT_DICOM/ and MASKS_DICOM.zip) or a folder of them")
    patients = find_patients(src)
    if not patients:
        raise InputError(f"{src} holds no 3D-IRCADb-01 patient (a folder with PATIENT_DICOM/ "
                         "and MASKS_DICOM/ or MASKS_DICOM.zip)")
    with import_folder(out_dir, overwrite=overwrite) as out:
        cases: list[ImportedCase] = []
        rows: list[ManifestRow] = []
        for patient in patients:
            name = name_from_input(patient)
            try:
                case = import_patient(patient, child_folder(out, name, "patient folder name"))
            except InputError as error:
                raise InputError(f"patient folder {patient}: {error}") from None
            cases.append(case)
            if case.in_manifest:
                liver = Path(case.liver_mask) if case.liver_mask else None
                rows.append(ManifestRow(patient_id=name, timepoint="baseline",
                                        image=Path(case.image), center=CENTER,
                                        liver_mask=liver, lesion_mask=Path(case.lesion_mask)))
        return finish_import("ircadb", src, out, cases, rows)


def import_patient(patient: Path, out: Path) -> ImportedCase:
    """Import one patient into `out`: CT (when present), liver mask and lesion instance mask."""
    case = ImportedCase(patient_id=out.name)
    ct: Volume | None = None
    if (patient / "PATIENT_DICOM").is_dir():
        ct = read_image(patient / "PATIENT_DICOM")
        case.image = str(write_image(ct, out / "ct.nii.gz"))
    else:
        case.in_manifest = False
        case.notes.append("masks only (no PATIENT_DICOM/): not in the manifest")
    with tempfile.TemporaryDirectory(prefix="livermets-ircadb-") as scratch:
        masks = _Masks(patient, Path(scratch))
        structures = masks.structures()
        lesion_names = [s for s in structures if is_lesion_structure(s)]
        ignored = [s for s in structures if s.lower() != LIVER_STRUCTURE and s not in lesion_names]
        if ignored:
            case.notes.append("not lesions: " + ", ".join(ignored))
        grid = ct
        liver_name = next((s for s in structures if s.lower() == LIVER_STRUCTURE), None)
        if liver_name is not None:
            liver = masks.read(liver_name)
            grid = _on_grid(grid, liver, patient, liver_name)
            case.liver_mask = write_mask(grid, (liver.array > 0).astype(np.uint8),
                                         out / "liver.nii.gz")
        else:
            case.notes.append("no liver mask")
        union: np.ndarray | None = None
        for name in lesion_names:
            mask = masks.read(name)
            grid = _on_grid(grid, mask, patient, name)
            union = add_lesion_components(union, mask.array)
    if grid is None:
        raise InputError(f"{patient} has neither a CT nor a liver or lesion mask to import")
    lesions = instance_labels(union if union is not None else np.zeros(grid.shape, np.uint8),
                              grid.spacing, min_volume_mm3=MIN_LESION_VOLUME_MM3)
    case.lesion_mask = write_mask(grid, lesions, out / "lesions.nii.gz")
    case.lesion_volumes_ml = lesion_volumes_ml(lesions, grid)
    case.lesions = len(case.lesion_volumes_ml)
    logger.info("%s: %d lesion(s) from %s", patient.name, case.lesions, lesion_names or "none")
    return case


def _on_grid(grid: Volume | None, mask: Volume, patient: Path, name: str) -> Volume:
    if grid is None:
        return mask
    difference = grid.geometry.difference(mask.geometry)
    if difference is not None:
        raise InputError(f"{patient}: mask '{name}' is not on the CT's grid ({difference})")
    return grid
