"""The saved-model format (`model.pt`): weights + architecture + pre-processing settings.

Everything inference needs to rebuild the network, without importing the trainer. The file is
a `torch.save`d dict:

    {"format": "livermets-model", "format_version": 1, "arch": str, "task": "liver"|"lesion",
     "options": JSON str, "preprocessing": JSON str, "record": JSON str,
     "state_dict": {name: tensor}}

Only strings, ints and tensors: `load_model` reads it with `torch.load(weights_only=True)`, so a
model file can never run code. Weights may be stored as float16 (half the size) and come back
as float32. An `encoder_weights` file named in the options (or the ImageNet weights a network
loads by default) is replaced by "<name> (sha256 <hex>)" on saving: its weights are in the state
dict, so loading never needs the original file.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from livermets.errors import InputError
from livermets.io.atomic import atomic_path
from livermets.models.encoder_unet import EncoderUNet
from livermets.models.files import read_torch_file
from livermets.models.registry import MODEL_NAMES, create_model, model_options, network_class
from livermets.models.state import first_mismatch, shapes_of
from livermets.types import PathLike

logger = logging.getLogger(__name__)

FORMAT = "livermets-model"
FORMAT_VERSION = 1
"""The newest format version this livermets writes and reads."""
TASKS: tuple[str, ...] = ("liver", "lesion")
_WEIGHTS_OPTION = "encoder_weights"
_UNLOADED = "UNLOADED_WEIGHTS"
"""Class attribute of a network with an encoder: the encoder_weights value that reads no file."""
_JSON_FIELDS: tuple[str, ...] = ("options", "preprocessing", "record")
_HINT = "give the model.pt that `livermets train` wrote"


@dataclass(frozen=True)
class SavedModel:
    """A loaded model file: the network (eval mode, float32) and what was saved with it."""

    model: nn.Module
    arch: str
    options: dict[str, Any]
    """All architecture options, defaults included (encoder_weights as "<name> (sha256 <hex>)")."""
    task: str
    """"liver" or "lesion"."""
    preprocessing: dict[str, Any]
    record: dict[str, Any]


def save_model(
    path: PathLike,
    model: nn.Module,
    *,
    arch: str,
    options: Mapping[str, Any],
    task: str,
    preprocessing: Mapping[str, Any],
    record: Mapping[str, Any],
    half: bool = False,
) -> Path:
    """Write `model` to `path` atomically in the livermets-model format; return the path.

    `model` is the bare network (unwrap DDP / torch.compile first: their key names differ).

    `arch` and `options` must be what built `model` (`create_model(arch, **options)`); the
    options are stored with their defaults filled in. `preprocessing` and `record` must be
    JSON-serialisable. `half` stores floating-point weights as float16.
    Raises ValueError when the task is unknown, a dict is not JSON-serialisable or the model's
    weights do not match `arch` with `options`.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    stored = _portable_options(model, {**model_options(arch), **options})
    with torch.device("meta"):
        reference = _build(arch, stored)
    state = model.state_dict()
    problem = first_mismatch(shapes_of(reference.state_dict()), state)
    if problem is not None:
        raise ValueError(f"the model does not match {arch} with options {stored}: {problem}")
    fields = {"options": stored, "preprocessing": preprocessing, "record": record}
    payload: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "arch": arch,
        "task": task,
        **{name: _to_json(name, value) for name, value in fields.items()},
        "state_dict": {key: _storable(tensor, half=half) for key, tensor in state.items()},
    }
    target = Path(path)
    with atomic_path(target) as tmp:
        torch.save(payload, tmp)
    logger.info("saved %s %s model to %s", task, arch, target)
    return target


def load_model(
    path: PathLike,
    *,
    expected_task: str | None = None,
    map_location: str | torch.device = "cpu",
) -> SavedModel:
    """Read a model file written by `save_model`; the network comes back in eval mode, float32.

    Raises InputError (one line) for a missing, unreadable, truncated or code-carrying file, a
    file that is not a livermets model, a newer format version, a task other than
    `expected_task` (when given) or weights that do not match the architecture.
    """
    if expected_task is not None and expected_task not in TASKS:
        raise ValueError(f"expected_task must be one of {', '.join(TASKS)}, got {expected_task!r}")
    file = Path(path)
    payload = read_torch_file(file, what="model file", hint=_HINT, map_location=map_location)
    if not isinstance(payload, Mapping) or payload.get("format") != FORMAT:
        raise InputError(f"{file} is not a livermets model file; {_HINT}")
    version = payload.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise _damaged(file, f"format_version is {version!r}")
    if version > FORMAT_VERSION:
        raise InputError(
            f"{file} has model format version {version} but this livermets reads up to "
            f"{FORMAT_VERSION}; upgrade livermets"
        )
    task, arch = payload.get("task"), payload.get("arch")
    if task not in TASKS:
        raise _damaged(file, f"task is {task!r}")
    if expected_task is not None and task != expected_task:
        raise InputError(f"{file}: this is a {task} model; give a {expected_task} model")
    if arch not in MODEL_NAMES:
        raise InputError(
            f"{file} holds architecture {arch!r}, which this livermets does not know "
            f"({', '.join(MODEL_NAMES)}); upgrade livermets"
        )
    fields = {name: _from_json(file, name, payload.get(name)) for name in _JSON_FIELDS}
    try:
        model = _build(str(arch), fields["options"])
    except InputError as error:
        raise InputError(f"{file}: {error}") from error
    state = payload.get("state_dict")
    if not isinstance(state, Mapping):
        raise _damaged(file, "no state_dict")
    problem = first_mismatch(shapes_of(model.state_dict()), state)
    if problem is not None:
        raise InputError(
            f"{file}: the weights do not match the {arch} architecture ({problem}); {_HINT}"
        )
    model.load_state_dict(state)  # copies into the float32 parameters: float16 comes back fp32
    model.to(map_location).eval()
    logger.info("loaded %s %s model from %s", task, arch, file)
    return SavedModel(model=model, arch=str(arch), task=str(task), **fields)


def _build(arch: str, options: Mapping[str, Any]) -> nn.Module:
    """create_model for stored options: a described encoder_weights is restored as a record only
    (the network is built without reading any weights file; the state dict holds them)."""
    unloaded = getattr(network_class(arch), _UNLOADED, None)
    source = options.get(_WEIGHTS_OPTION, unloaded)
    if source == unloaded:
        return create_model(arch, **options)
    model = create_model(arch, **{**options, _WEIGHTS_OPTION: unloaded})
    if isinstance(model, EncoderUNet):
        model.encoder_source = str(source)
    return model


def _portable_options(model: nn.Module, options: dict[str, Any]) -> dict[str, Any]:
    """`options` with encoder_weights (a path, "imagenet" or a packaged default) replaced by
    the model's "<name> (sha256 <hex>)" record, unless it built the net without any file."""
    if _WEIGHTS_OPTION not in options:
        return options
    if options[_WEIGHTS_OPTION] == getattr(type(model), _UNLOADED, None):
        return options
    source = getattr(model, "encoder_source", None)
    if not isinstance(source, str):
        raise ValueError(f"option {_WEIGHTS_OPTION} is set but the model has no encoder")
    return {**options, _WEIGHTS_OPTION: source}


def _storable(tensor: torch.Tensor, *, half: bool) -> torch.Tensor:
    tensor = tensor.detach().cpu()
    return tensor.half() if half and tensor.is_floating_point() else tensor


def _to_json(name: str, value: Mapping[str, Any]) -> str:
    try:
        return json.dumps(dict(value), sort_keys=True)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be JSON-serialisable: {error}") from error


def _from_json(file: Path, name: str, text: object) -> dict[str, Any]:
    try:
        value = json.loads(text) if isinstance(text, str) else None
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise _damaged(file, f"{name} is not a JSON object")
    return value


def _damaged(file: Path, problem: str) -> InputError:
    return InputError(f"{file} is a damaged livermets model file ({problem}); {_HINT}")
