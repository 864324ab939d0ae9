"""Reading PyTorch files safely (`weights_only`: tensors and plain containers, never code)."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import torch

from livermets.errors import InputError
from livermets.types import PathLike

_CHUNK_BYTES = 1 << 20
_REFUSAL_HEADER = "Weights only load failed"
_REFUSAL_BOILERPLATE = ("Please file an issue", "Check the documentation of torch.load")


def read_torch_file(
    path: PathLike, *, what: str, hint: str, map_location: str | torch.device = "cpu"
) -> object:
    """`torch.load(path, weights_only=True)`, with one-line InputErrors.

    `what` names the expected content ("model file") and `hint` says what to give instead; both
    go into the message for a missing, unreadable, truncated, non-torch or code-carrying file
    (a pickle that would import or call anything beyond tensors and containers is refused).
    """
    file = Path(path)
    if not file.is_file():
        raise InputError(f"{what} not found: {file}; {hint}")
    try:
        return torch.load(file, map_location=map_location, weights_only=True)
    except Exception as error:
        raise InputError(f"{file} is not a readable {what} ({_reason(error)}); {hint}") from error


def sha256_file(path: PathLike) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as stream:
        while chunk := stream.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _reason(error: BaseException, limit: int = 200) -> str:
    """One short line from torch.load's error; for a weights_only refusal, the refused item."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()] or [repr(error)]
    if isinstance(error, pickle.UnpicklingError) and lines[0].startswith(_REFUSAL_HEADER):
        details = [line for line in lines[1:] if not line.startswith(_REFUSAL_BOILERPLATE)]
        text = "not plain tensors and containers" + (f": {details[0]}" if details else "")
    else:
        text = lines[0]
    return text if len(text) <= limit else text[: limit - 3] + "..."
