"""Losses on logits (N, 1, H, W) against binary targets (N, 1, H, W) in {0, 1}.

`bce`: binary cross-entropy (the paper's No-TL loss), computed from logits for stability.
`dice_bce`: BCE + (1 - soft Dice) over the whole batch (smooth 1), the usual reading of the
paper's unspecified "custom loss" for the TL net.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

LossFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
SMOOTH = 1.0


def bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy of sigmoid(logits) against `target`."""
    return F.binary_cross_entropy_with_logits(logits.float(), target.float())


def soft_dice(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Soft Dice of sigmoid(logits) and `target` over the whole batch, (2I + 1) / (P + T + 1)."""
    probability = torch.sigmoid(logits.float())
    target = target.float()
    intersection = (probability * target).sum()
    return (2 * intersection + SMOOTH) / (probability.sum() + target.sum() + SMOOTH)


def dice_bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BCE + (1 - soft Dice)."""
    return bce(logits, target) + (1 - soft_dice(logits, target))


LOSSES: dict[str, LossFunction] = {"bce": bce, "dice_bce": dice_bce}


def get_loss(name: str) -> LossFunction:
    """The loss function called `name` (`bce` or `dice_bce`)."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; valid: {', '.join(LOSSES)}")
    return LOSSES[name]
