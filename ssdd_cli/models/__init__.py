"""Architectures by name: ``create_model("convnet3", out_dim=512)``."""

from . import convnet as _convnet  # noqa: F401  (registers the ConvNets)
from . import resnet as _resnet  # noqa: F401  (registers the ResNets)
from .registry import (
    Backbone,
    backbone_state_dict,
    check_model_name,
    create_model,
    list_models,
    model_descriptions,
    register_model,
)

__all__ = ["Backbone", "backbone_state_dict", "check_model_name", "create_model", "list_models", "model_descriptions", "register_model"]
