"""What a training run writes besides weights: history.csv, the loss curve, run.json."""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from livermets.io.atomic import atomic_path, write_csv_atomic, write_text_atomic

HISTORY_COLUMNS = ("epoch", "train_loss", "val_loss", "val_dice", "lr", "seconds")


@dataclass(frozen=True)
class EpochRecord:
    """One epoch's figures: losses (mean per slice), validation Dice at 0.5, lr, seconds."""

    epoch: int
    train_loss: float
    val_loss: float
    val_dice: float
    lr: float
    seconds: float


def write_history(records: list[EpochRecord], path: Path) -> None:
    """history.csv: one row per epoch, columns `HISTORY_COLUMNS`."""
    rows = ({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in asdict(r).items()}
            for r in records)
    write_csv_atomic(path, rows, HISTORY_COLUMNS)


def plot_losses(records: list[EpochRecord], path: Path, title: str) -> None:
    """A PNG of training and validation loss (left axis) and validation Dice (right axis)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r.epoch for r in records]
    figure, left = plt.subplots(figsize=(6, 3.6), dpi=100)
    left.plot(epochs, [r.train_loss for r in records], label="training loss", color="tab:blue")
    left.plot(epochs, [r.val_loss for r in records], label="validation loss", color="tab:orange")
    left.set_xlabel("epoch")
    left.set_ylabel("loss")
    right = left.twinx()
    right.plot(epochs, [r.val_dice for r in records], label="validation Dice", color="tab:green",
               linestyle="--")
    right.set_ylabel("Dice")
    right.set_ylim(0, 1)
    lines = left.get_lines() + right.get_lines()
    left.legend(lines, [str(line.get_label()) for line in lines], loc="center right", fontsize=8)
    left.set_title(title, fontsize=10)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    plt.close(figure)


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes (hex)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def git_commit() -> str | None:
    """The livermets source tree's git commit, or None outside a git checkout."""
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent,
                                capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def versions() -> dict[str, str]:
    """Versions of Python and the libraries a run depends on."""
    import numpy
    import SimpleITK
    import torch

    from livermets import __version__

    return {"livermets": __version__, "python": platform.python_version(),
            "torch": torch.__version__, "numpy": numpy.__version__,
            "SimpleITK": SimpleITK.Version_VersionString()}


def write_run_record(record: dict[str, Any], path: Path) -> None:
    """run.json, atomically."""
    write_text_atomic(path, json.dumps(record, indent=2, default=str) + "\n")
