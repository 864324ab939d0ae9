"""The starter models shipped with livermets: `liver.pt` and `lesion.pt` in this folder.

Trained by `scripts/train_starter_models.py` on generated CT plus the few real labelled CTs the
project holds (see MODEL_CARD.md); `livermets predict` uses them when no model is named, and
`livermets models` lists them. Each file's run record carries its provenance.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from livermets.errors import InputError

STARTER_DIR = Path(__file__).resolve().parent
TASKS: tuple[str, ...] = ("liver", "lesion")


def starter_model_path(task: str) -> Path:
    """The shipped model file for `task` ("liver" or "lesion"); InputError when it is missing."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    path = STARTER_DIR / f"{task}.pt"
    if not path.is_file():
        raise InputError(f"the starter {task} model is not installed ({path} is missing); give "
                         f"--{task}-model RUN, or reinstall livermets")
    return path


CARD_TEMPLATE = STARTER_DIR / "MODEL_CARD.md.j2"
CARD_FIGURES = STARTER_DIR / "card.json"
"""The validation figures of the installed models, written by benchmarks/starter_validation.py."""


def _installed() -> dict[str, Any]:
    """The installed starter models by task, loaded (`SavedModel`)."""
    from livermets.models.saved import load_model

    return {task: load_model(STARTER_DIR / f"{task}.pt", expected_task=task)
            for task in TASKS if (STARTER_DIR / f"{task}.pt").is_file()}


def starter_models() -> list[dict[str, Any]]:
    """One summary per installed starter model: task, architecture, grid, size, provenance."""
    found = []
    for task, saved in _installed().items():
        path = STARTER_DIR / f"{task}.pt"
        provenance = saved.record.get("provenance", {})
        found.append({
            "task": task, "arch": saved.arch,
            "image_size": saved.preprocessing.get("image_size"),
            "base_width": saved.options.get("base_width"),
            "file": str(path), "size_mb": round(path.stat().st_size / 1e6, 2),
            "git_commit": provenance.get("git_commit"),
            "best_val_dice": provenance.get("best_val_dice"),
            "sources": sorted(provenance.get("sources", {})),
        })
    return found


def model_card() -> str:
    """The model card (Markdown): the template filled with the installed models' provenance and
    the validation figures of `card.json`. MODEL_CARD.md at the repository root is this text."""
    import jinja2

    figures = json.loads(CARD_FIGURES.read_text()) if CARD_FIGURES.is_file() else {}
    models = {task: saved.record.get("provenance", {}) for task, saved in _installed().items()}
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(STARTER_DIR),
                                     undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                                     autoescape=False)
    return environment.get_template(CARD_TEMPLATE.name).render(models=models, figures=figures)
