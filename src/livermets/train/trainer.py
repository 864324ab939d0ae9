"""The training loop: one model for one task, from a manifest to a run folder.

Run folder: `model.pt` (best epoch by validation loss, in the saved-model format inference
reads), `checkpoint.pt` (last epoch: weights, optimiser, scheduler, history; for `--resume`),
`config.yaml`, `history.csv`, `loss_curve.png`, `run.json`. Only rank 0 writes. Every file is
written atomically; checkpoints are read with `weights_only=True`, so they cannot run code.

Determinism: the model is initialised from `seed`, and epoch k's slice order and augmentation
come from a generator seeded with (seed, k); so resuming after epoch k reproduces the
uninterrupted run (on the same machine and thread count).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import yaml
from torch.nn.parallel import DistributedDataParallel

from livermets.config import DistributedEnvironment, TrainConfig, distributed_environment
from livermets.errors import InputError
from livermets.io.atomic import atomic_path, write_text_atomic
from livermets.io.manifest import MASK_COLUMNS, ManifestRow, read_manifest, validate_manifest
from livermets.io.safe_paths import check_not_input, check_out_folder, make_folder
from livermets.models import create_model
from livermets.models.precision import autocast, resolve_precision
from livermets.models.saved import save_model
from livermets.train.data import (
    SliceSet,
    augment,
    epoch_indices,
    load_slices,
    split_patients,
    with_channels,
)
from livermets.train.losses import LossFunction, get_loss
from livermets.train.records import (
    EpochRecord,
    file_sha256,
    git_commit,
    plot_losses,
    versions,
    write_history,
    write_run_record,
)
from livermets.types import PathLike

logger = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
#: A best validation Dice below this means the network never left "predict nothing" (some
#: seeds of a recipe stay there: benchmarks/RESULTS.md); the run says so.
NOT_LEARNED_DICE = 0.05
MODEL = "model.pt"
#: config.yaml fields that may change when resuming (the others must match the run's).
RESUMABLE_CHANGES = frozenset({"epochs", "threads", "num_workers"})


@dataclass(frozen=True)
class TrainResult:
    """Outcome of a run: where the best model is and how training went."""

    run_dir: Path
    model_path: Path
    best_epoch: int
    best_val_loss: float
    best_val_dice: float
    epochs_run: int
    stop_reason: str
    history: tuple[EpochRecord, ...]


EpochHook = Callable[[EpochRecord], None]


def train(manifest: PathLike, run_dir: PathLike, config: TrainConfig, *, resume: bool = False,
          overwrite: bool = False, on_epoch_end: EpochHook | None = None) -> TrainResult:
    """Train `config.arch` for `config.task` on the manifest's training rows into `run_dir`."""
    env = distributed_environment()
    run = Path(run_dir)
    manifest_path = Path(manifest)
    rows = read_manifest(manifest_path)
    _check_run_dir(run, config, rows, manifest_path, resume=resume, overwrite=overwrite)
    device = _device(env)
    if config.threads:
        torch.set_num_threads(config.threads)
    precision = resolve_precision(config.precision, device)
    train_rows, val_rows = split_patients(rows, config)
    validate_manifest([*train_rows, *val_rows],
                      columns=("liver_mask",) if config.task == "liver" else MASK_COLUMNS)
    started = time.perf_counter()
    training = load_slices(train_rows, config)
    validation = load_slices(val_rows, config) if val_rows else None
    load_seconds = time.perf_counter() - started
    if validation is None:
        logger.warning("no validation patients: monitoring the training loss instead")
    torch.manual_seed(config.seed)
    model = create_model(config.arch, **config.model_options()).to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # stubs lack it
    if env.is_distributed:
        _init_distributed(env, device)
        network: torch.nn.Module = DistributedDataParallel(model)
    else:
        network = model
    optimizer, scheduler = make_optimizer(model, config)
    _start_run_dir(run, config, resume=resume, env=env)  # every check passed: now write
    state = TrainingState()
    if resume:
        state = _load_checkpoint(run / CHECKPOINT, model, optimizer, scheduler)
        logger.info("resuming %s after epoch %d", run, state.epoch)
    loop = _Loop(config, network, optimizer, get_loss(config.loss_name), device, precision, env)
    record = _run_record(config, manifest_path, train_rows, val_rows, device, precision, model,
                         load_seconds, training, validation)
    stop_reason = "epochs"
    for epoch in range(state.epoch + 1, config.epochs + 1):
        if state.bad_epochs >= config.early_stop_patience:
            stop_reason = "early stopping"
            break
        tic = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        train_loss = loop.train_epoch(training, epoch)
        val_loss, val_dice = loop.evaluate(validation) if validation else (train_loss, math.nan)
        scheduler.step(val_loss)
        epoch_record = EpochRecord(epoch, train_loss, val_loss, val_dice, lr,
                                   time.perf_counter() - tic)
        state.add(epoch_record)
        if env.is_main:
            if state.improved:
                save_model(run / MODEL, model, arch=config.arch,
                           options=config.model_options(), task=config.task,
                           preprocessing=preprocessing_settings(config),
                           record=record | {"best_epoch": epoch})
            _save_checkpoint(run / CHECKPOINT, model, optimizer, scheduler, state)
            write_history(state.history, run / "history.csv")
        logger.info("epoch %d: train loss %.4f, val loss %.4f, val Dice %.3f, lr %.2g, %.1f s",
                    epoch, train_loss, val_loss, val_dice, epoch_record.lr, epoch_record.seconds)
        if on_epoch_end is not None:
            on_epoch_end(epoch_record)
    else:
        if state.bad_epochs >= config.early_stop_patience:
            stop_reason = "early stopping"
    if env.is_main and validation and not state.best_dice >= NOT_LEARNED_DICE:
        logger.warning("validation Dice stayed below %.2f (best epoch %d): the network did not "
                       "learn to segment; train again with another seed (--set seed=1), a "
                       "lower --set lr=... or more epochs", NOT_LEARNED_DICE, state.best_epoch)
    if env.is_main:
        plot_losses(state.history, run / "loss_curve.png",
                    f"{config.task} - {config.arch} ({precision})")
        record |= {"stop_reason": stop_reason, "best_epoch": state.best_epoch,
                   "best_val_loss": state.best_loss, "best_val_dice": state.best_dice,
                   "epochs_run": state.epoch,
                   "train_seconds": sum(r.seconds for r in state.history)}
        write_run_record(record, run / "run.json")
    if env.is_distributed:
        dist.barrier()
        dist.destroy_process_group()
    return TrainResult(run, run / MODEL, state.best_epoch, state.best_loss, state.best_dice,
                       state.epoch, stop_reason, tuple(state.history))


def make_optimizer(model: torch.nn.Module, config: TrainConfig
                   ) -> tuple[torch.optim.Adam, torch.optim.lr_scheduler.ReduceLROnPlateau]:
    """The paper's Adam and its schedule, stepped once per epoch with the validation loss.

    As in Keras (the paper's framework): once `lr_patience` epochs in a row have not lowered
    the validation loss, the next epoch runs at lr x `lr_factor`. torch counts one epoch more
    (it reduces when the count exceeds its patience), hence `lr_patience - 1` below.
    """
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr,
                                 betas=(config.beta1, config.beta2))
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=config.lr_factor, patience=max(0, config.lr_patience - 1))
    return optimizer, scheduler


def preprocessing_settings(config: TrainConfig) -> dict[str, Any]:
    """What inference must do to a CT before this model sees it (stored in model.pt)."""
    from livermets.preprocess import AIR_HU, LIVER_WINDOW_HU

    settings: dict[str, Any] = {"image_size": config.image_size, "pad_hu": AIR_HU,
                                "threshold_default": "otsu" if config.task == "lesion" else 0.5}
    if config.task == "liver":
        settings |= {"normalisation": "window", "window_hu": list(LIVER_WINDOW_HU)}
    else:
        settings |= {"normalisation": "liver_zscore", "z_margin_mm": config.z_margin_mm}
        if config.crop_margin_mm is not None:
            settings["crop_margin_mm"] = config.crop_margin_mm
        if config.field_mm is not None:
            settings["field_mm"] = config.field_mm
        if config.context_mm is not None:
            settings["context_mm"] = config.context_mm
    return settings


class TrainingState:
    """The history, the best epoch so far and the epochs since it (what a checkpoint restores).

    Training stops before the next epoch once `bad_epochs` reaches `early_stop_patience`.
    Epochs before the network first reaches a validation Dice of `NOT_LEARNED_DICE` do not
    count: some runs predict nothing for 10-15 epochs before they start to learn, and early
    stopping on the validation loss used to end them just as they did (benchmarks/RESULTS.md).
    """

    def __init__(self) -> None:
        self.history: list[EpochRecord] = []
        self.best_loss = math.inf
        self.best_dice = math.nan
        self.best_epoch = 0
        self.bad_epochs = 0
        self.improved = False
        self.learned = False

    @property
    def epoch(self) -> int:
        return self.history[-1].epoch if self.history else 0

    def add(self, record: EpochRecord) -> None:
        self.history.append(record)
        # Without validation (Dice NaN) every epoch counts, as before.
        self.learned = self.learned or not record.val_dice < NOT_LEARNED_DICE
        self.improved = record.val_loss < self.best_loss
        if self.improved:
            self.best_loss, self.best_dice = record.val_loss, record.val_dice
            self.best_epoch, self.bad_epochs = record.epoch, 0
        elif self.learned:
            self.bad_epochs += 1

    def to_json(self) -> str:
        return json.dumps({"history": [r.__dict__ for r in self.history],
                           "best_loss": self.best_loss, "best_dice": self.best_dice,
                           "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs})

    @classmethod
    def from_json(cls, text: str) -> TrainingState:
        """The state after the saved history, replayed epoch by epoch (so a checkpoint of an
        earlier version resumes under today's early-stopping rule)."""
        state = cls()
        for record in json.loads(text)["history"]:
            state.add(EpochRecord(**record))
        return state


class _Loop:
    """One epoch of training and one pass of validation, on one or several processes."""

    def __init__(self, config: TrainConfig, network: torch.nn.Module,
                 optimizer: torch.optim.Optimizer, loss: LossFunction, device: torch.device,
                 precision: str, env: DistributedEnvironment) -> None:
        self.config, self.network, self.optimizer, self.loss = config, network, optimizer, loss
        self.device, self.precision, self.env = device, precision, env
        self.batch = max(1, math.ceil(config.batch_size / env.world_size))

    def _to_device(self, images: torch.Tensor, targets: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, S, S) float32 batches on the training device (images channels_last)."""
        images = images.to(self.device, torch.float32)
        targets = targets.to(self.device, torch.float32)
        if self.config.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images, targets

    def train_epoch(self, slices: SliceSet, epoch: int) -> float:
        """Mean training loss per slice over this process's share of the epoch."""
        generator = torch.Generator().manual_seed(self.config.seed * 100_003 + epoch)
        order = epoch_indices(slices, self.config, generator)
        mine = order[self.env.rank :: self.env.world_size]
        self.network.train()
        total, count = 0.0, 0
        progress = _Progress(len(mine), f"epoch {epoch}", enabled=self.env.is_main)
        for start in range(0, len(mine), self.batch):
            index = mine[start : start + self.batch]
            images = with_channels(slices.images[index].float())
            targets = slices.targets[index].float().unsqueeze(1)
            if self.config.augment:
                images, targets = augment(images, targets, self.config, generator)
            images, targets = self._to_device(images, targets)
            with autocast(self.precision, self.device):
                logits = self.network(images)
            loss = self.loss(logits.float(), targets)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.config.clip_norm is not None:
                torch.nn.utils.clip_grad_norm_(self.network.parameters(), self.config.clip_norm)
            self.optimizer.step()
            total += float(loss.detach()) * len(index)
            count += len(index)
            progress.update(len(index), float(loss.detach()))
        progress.close()
        return self._mean(total, count)

    @torch.no_grad()
    def evaluate(self, slices: SliceSet) -> tuple[float, float]:
        """(mean loss per slice, Dice of sigmoid > 0.5 over all voxels) on validation slices."""
        self.network.eval()
        sums = torch.zeros(5, dtype=torch.float64)  # loss, count, intersection, pred, target
        mine = torch.arange(len(slices))[self.env.rank :: self.env.world_size]
        for start in range(0, len(mine), self.batch * 2):
            index = mine[start : start + self.batch * 2]
            images, targets = self._to_device(with_channels(slices.images[index]),
                                              slices.targets[index].unsqueeze(1))
            with autocast(self.precision, self.device):
                logits = self.network(images)
            logits = logits.float()
            predicted = (logits > 0).float()
            sums += torch.tensor([float(self.loss(logits, targets)) * len(index), len(index),
                                  float((predicted * targets).sum()), float(predicted.sum()),
                                  float(targets.sum())], dtype=torch.float64)
        if self.env.is_distributed:
            dist.all_reduce(sums)
        loss, count, intersection, predicted_sum, target_sum = sums.tolist()
        denominator = predicted_sum + target_sum
        dice = 2 * intersection / denominator if denominator > 0 else 1.0
        return loss / max(count, 1), dice

    def _mean(self, total: float, count: int) -> float:
        if not self.env.is_distributed:
            return total / max(count, 1)
        sums = torch.tensor([total, count], dtype=torch.float64)
        dist.all_reduce(sums)
        return float(sums[0] / max(float(sums[1]), 1.0))


class _Progress:
    """A progress bar (tqdm) with the running loss and ETA on the main process."""

    def __init__(self, total: int, description: str, *, enabled: bool) -> None:
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=description, unit="slice", leave=False,
                            disable=None, dynamic_ncols=True)

    def update(self, n: int, loss: float) -> None:
        if self.bar is not None:
            self.bar.update(n)
            self.bar.set_postfix(loss=f"{loss:.4f}", refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _device(env: DistributedEnvironment) -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", env.local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def _init_distributed(env: DistributedEnvironment, device: torch.device) -> None:
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    logger.info("distributed training: rank %d of %d on %s", env.rank, env.world_size, device)


def _check_run_dir(run: Path, config: TrainConfig, rows: Sequence[ManifestRow],
                   manifest: Path, *, resume: bool, overwrite: bool) -> None:
    """`InputError` when `run` cannot take this run: a file, an input or a folder holding
    one, a run without `--resume`/`--overwrite`, or a resume with changed settings. Writes
    nothing."""
    check_out_folder(run)
    inputs = [manifest, *(p for r in rows for p in (r.image, r.liver_mask, r.lesion_mask)
                          if p is not None)]
    check_not_input(run, inputs, "the run folder")
    config_path = run / "config.yaml"
    holds_run = (run / CHECKPOINT).exists() or (run / MODEL).exists()
    if resume:
        if not (run / CHECKPOINT).is_file():
            raise InputError(f"{run} has no {CHECKPOINT} to resume from; start without --resume")
        saved = yaml.safe_load(config_path.read_text(encoding="utf-8"))
        changed = sorted(k for k, v in config.to_dict().items()
                         if k not in RESUMABLE_CHANGES and saved.get(k) != v)
        if changed:
            raise InputError(f"--resume with settings that differ from {config_path}: "
                             f"{', '.join(changed)}; resume with the run's settings")
    elif holds_run and not overwrite:
        raise InputError(f"{run} already holds a training run; pass --resume to continue "
                         "it or --overwrite to start again")
    elif not holds_run and not config_path.exists() and run.is_dir() and any(run.iterdir()):
        raise InputError(f"{run} holds files but no training run (no config.yaml or "
                         "model.pt): livermets did not write it; choose another --out")


def _start_run_dir(run: Path, config: TrainConfig, *, resume: bool,
                   env: DistributedEnvironment) -> None:
    """Clear an earlier run's files (a new run) and write config.yaml; rank 0 only."""
    if not env.is_main:
        return
    if not resume:
        for name in (CHECKPOINT, MODEL, "history.csv", "run.json", "loss_curve.png"):
            (run / name).unlink(missing_ok=True)
    make_folder(run)
    write_text_atomic(run / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))


def _save_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                     scheduler: Any, state: TrainingState) -> None:
    payload = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
               "scheduler": json.dumps(scheduler.state_dict(), default=float),
               "state": state.to_json()}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def _load_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                     scheduler: Any) -> TrainingState:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
        scheduler.load_state_dict(json.loads(payload["scheduler"]))
        return TrainingState.from_json(payload["state"])
    except (RuntimeError, KeyError, ValueError, OSError, EOFError) as exc:
        raise InputError(f"{path} is not a readable livermets checkpoint ({type(exc).__name__}); "
                         "start again with --overwrite") from exc


def _run_record(config: TrainConfig, manifest: Path, train_rows: list[Any], val_rows: list[Any],
                device: torch.device, precision: str, model: torch.nn.Module,
                load_seconds: float, training: SliceSet, validation: SliceSet | None
                ) -> dict[str, Any]:
    describe = getattr(model, "describe", None)
    return {
        "task": config.task, "arch": config.arch, "config": config.to_dict(),
        "versions": versions(), "git_commit": git_commit(), "device": str(device),
        "threads": torch.get_num_threads(), "precision": precision, "seed": config.seed,
        "manifest": str(manifest.resolve()), "manifest_sha256": file_sha256(manifest),
        "train_cases": [r.case_id for r in train_rows],
        "validation_cases": [r.case_id for r in val_rows],
        "train_slices": len(training), "validation_slices": len(validation) if validation else 0,
        "encoder": describe() if callable(describe) else None,
        "load_seconds": round(load_seconds, 3),
    }
