"""Inference copies of the networks with each 3x3 convolution and its ReLU run as one oneDNN call.

The decoders and encoders are `nn.Sequential` runs of Conv2d, ReLU (`layers.DoubleConv`). On
CPU, PyTorch runs the convolution through oneDNN and then the ReLU as a separate pass over the
activation (about a third of the U-Net's forward time in bf16 on CPU, measured in
benchmarks/RESULTS.md). oneDNN applies the ReLU as a post-op on the convolution's output before
it is stored: the same convolution primitive, and max(0, x) is exact in any dtype, so the
output equals the two-step result bit for bit (checked on the starter models in
`tests/infer/test_predict_speed_identity.py`).

Only for inference on CPU: the fused module keeps no gradients. Everything that is not a
plain Conv2d (zero padding, numeric padding) directly followed by a ReLU is left as it is.
"""

from __future__ import annotations

import copy
import itertools

import torch
from torch import nn


def fused_convolutions_available() -> bool:
    """Whether this PyTorch build has oneDNN's convolution with a pointwise post-op."""
    return bool(torch.backends.mkldnn.is_available()
                and hasattr(torch.ops.mkldnn, "_convolution_pointwise"))


class ConvReLU(nn.Module):
    """`relu(conv(x))` for a 2D convolution `conv`, in one oneDNN call: (N, C_in, H, W) ->
    (N, C_out, H', W').

    Under CPU autocast the input, weight and bias are cast to the autocast dtype first, as
    autocast casts them for `conv2d` (the cast weights are kept, made on first use).
    """

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.weight = conv.weight.detach()
        self.bias = None if conv.bias is None else conv.bias.detach()
        self.padding = [int(p) for p in conv.padding]
        self.stride = [int(s) for s in conv.stride]
        self.dilation = [int(d) for d in conv.dilation]
        self.groups = int(conv.groups)
        self._cast: dict[torch.dtype, tuple[torch.Tensor, torch.Tensor | None]] = {}

    def _parameters_in(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The weight and bias in `dtype` (cast once)."""
        if dtype == self.weight.dtype:
            return self.weight, self.bias
        if dtype not in self._cast:
            self._cast[dtype] = (self.weight.to(dtype),
                                 None if self.bias is None else self.bias.to(dtype))
        return self._cast[dtype]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C_in, H, W) -> relu(conv(x)) (N, C_out, H', W')."""
        dtype = (torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu")
                 else x.dtype)
        weight, bias = self._parameters_in(dtype)
        return torch.ops.mkldnn._convolution_pointwise(
            x.to(dtype), weight, bias, self.padding, self.stride, self.dilation, self.groups,
            "relu", [], "")


def _fusable(conv: nn.Module, relu: nn.Module) -> bool:
    """A plain zero-padded Conv2d with numeric padding, then a ReLU."""
    return (type(conv) is nn.Conv2d and type(relu) is nn.ReLU
            and conv.padding_mode == "zeros" and not isinstance(conv.padding, str))


def fuse_conv_relu(model: nn.Module) -> tuple[nn.Module, int]:
    """A copy of `model` (in eval mode) whose Conv2d + ReLU pairs inside `nn.Sequential`s are
    `ConvReLU` modules (the ReLU replaced by `nn.Identity`), and the number of pairs fused.

    `model` itself is not changed. Without oneDNN's fused convolution the copy is unfused.
    """
    fused = copy.deepcopy(model).eval()
    if not fused_convolutions_available():
        return fused, 0
    count = 0
    for module in fused.modules():
        if not isinstance(module, nn.Sequential):
            continue
        names = list(module._modules)
        for first, second in itertools.pairwise(names):
            conv, relu = module._modules[first], module._modules[second]
            if conv is not None and relu is not None and _fusable(conv, relu):
                module._modules[first] = ConvReLU(conv)  # type: ignore[arg-type]
                module._modules[second] = nn.Identity()
                count += 1
    return fused, count
