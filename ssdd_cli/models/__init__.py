"""Architectures by name: ``create_model("convnet3", out_dim=512)``."""

from . import alexnet as _alexnet  # noqa: F401  (registers the small-image AlexNet)
from . import convnet as _convnet  # noqa: F401  (registers the ConvNets)
from . import mobilenet as _mobilenet  # noqa: F401  (registers MobileNetV2)
from . import resnet as _resnet  # noqa: F401  (registers the ResNets)
from . import vgg as _vgg  # noqa: F401  (registers VGG-11)
from . import vit as _vit  # noqa: F401  (registers the small ViT)
from .registry import (
    Backbone,
    backbone_state_dict,
    check_model_name,
    create_model,
    list_models,
    model_descriptions,
    model_entry,
    register_model,
)

__all__ = ["Backbone", "backbone_state_dict", "check_model_name", "create_model", "list_models", "model_descriptions", "model_entry",
           "register_model"]
