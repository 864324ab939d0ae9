"""The generic model test, subclassed once per architecture (segmentation_models_pytorch style).

A subclass sets `arch`, `options` (tiny, so each test is fast), `size_multiple` and `size`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from livermets.errors import InputError
from livermets.models import create_model, load_model, model_options, save_model


class ModelContract:
    """Behaviour every registered network must have."""

    arch: ClassVar[str]
    options: ClassVar[dict[str, Any]]
    size_multiple: ClassVar[int]
    size: ClassVar[int] = 64
    batch: ClassVar[int] = 2

    def build(self, seed: int = 0) -> nn.Module:
        torch.manual_seed(seed)
        return create_model(self.arch, **self.options)

    def images(self, seed: int = 1, size: int | None = None) -> torch.Tensor:
        side = self.size if size is None else size
        generator = torch.Generator().manual_seed(seed)
        return torch.randn(self.batch, 1, side, side, generator=generator)

    def saved_options(self, model: nn.Module) -> dict[str, Any]:
        """The options a saved `model` stores: every option, defaults filled in."""
        return {**model_options(self.arch), **self.options}

    def test_output_is_one_logit_map_per_slice(self) -> None:
        model = self.build()
        out = model(self.images())
        assert out.shape == (self.batch, 1, self.size, self.size)
        assert out.dtype == torch.float32
        assert torch.isfinite(out).all()

    def test_gradients_reach_every_parameter(self) -> None:
        model = self.build().train()
        images = self.images()
        target = (images > 0.5).float()
        F.binary_cross_entropy_with_logits(model(images), target).backward()
        for name, parameter in model.named_parameters():
            assert parameter.grad is not None, name
            assert torch.isfinite(parameter.grad).all(), name
            assert parameter.grad.abs().sum() > 0, name

    def test_forward_is_deterministic_under_a_fixed_seed(self) -> None:
        first, second, other = self.build(seed=0), self.build(seed=0), self.build(seed=1)
        images = self.images()
        with torch.no_grad():
            out = first.eval()(images)
            assert torch.equal(out, second.eval()(images))
            assert torch.equal(out, first(images))
            assert not torch.equal(out, other.eval()(images))

    def test_channels_last_eval_matches_fp32(self) -> None:
        model = self.build().eval()
        images = self.images()
        with torch.no_grad():
            reference = model(images)
            model = model.to(memory_format=torch.channels_last)
            out = model(images.contiguous(memory_format=torch.channels_last))
        scale = reference.abs().max().item()
        assert torch.allclose(out, reference, rtol=1e-4, atol=1e-4 * scale)

    def test_bf16_autocast_is_close_to_fp32(self) -> None:
        model = self.build().eval()
        images = self.images()
        with torch.no_grad():
            reference = model(images)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = model(images)
        assert out.dtype == torch.bfloat16
        error = (out.float() - reference).abs().max().item()
        assert error <= 0.05 * reference.abs().max().item()

    def test_output_starts_from_the_one_percent_prior(self) -> None:
        """Untrained, the net calls almost every pixel background: sigmoid near 0.01."""
        torch.manual_seed(0)
        model = self.build().eval()
        with torch.no_grad():
            probability = torch.sigmoid(model(torch.randn(2, 1, self.size, self.size)))
        assert 0.005 < probability.median().item() < 0.02

    def test_size_not_a_multiple_is_a_clear_error(self) -> None:
        model = self.build()
        with pytest.raises(InputError, match=f"multiples of {self.size_multiple} pixels"):
            model(self.images(size=self.size + self.size_multiple // 2))

    def test_describe_is_one_line_naming_the_architecture(self) -> None:
        text = self.build().describe()
        assert text.startswith(f"{self.arch}:")
        assert "\n" not in text

    def test_unknown_option_lists_the_valid_ones(self) -> None:
        with pytest.raises(InputError, match="unknown option 'depth'") as caught:
            create_model(self.arch, depth=5)
        for option in model_options(self.arch):
            assert option in str(caught.value)

    @pytest.mark.parametrize("half", [False, True], ids=["fp32", "fp16"])
    def test_saved_model_round_trip(self, tmp_path: Path, half: bool) -> None:
        model = self.build().eval()
        path = save_model(
            tmp_path / "model.pt",
            model,
            arch=self.arch,
            options=self.options,
            task="lesion",
            preprocessing={"image_size": self.size, "standardise": "liver z-score"},
            record={"epochs": 3},
            half=half,
        )
        loaded = load_model(path, expected_task="lesion")
        assert not loaded.model.training
        assert all(p.dtype == torch.float32 for p in loaded.model.parameters())
        assert loaded.arch == self.arch and loaded.task == "lesion"
        assert loaded.options == self.saved_options(model)
        assert loaded.preprocessing == {"image_size": self.size, "standardise": "liver z-score"}
        assert loaded.record == {"epochs": 3}
        images = self.images()
        with torch.no_grad():
            reference, out = model(images), loaded.model(images)
        if half:
            scale = reference.abs().max().item()
            assert torch.allclose(out, reference, rtol=0.0, atol=0.01 * scale)
        else:
            assert torch.equal(out, reference)
