"""Segmentation networks: dilated ResNet/VGG16 backbones, PSPNet, DeepLabv3, HED and their dual-branch versions."""

from monai_exudate.networks.deeplabv3 import ASPPHead, DeepLabV3
from monai_exudate.networks.dual_branch import ARCHITECTURES, DualBranchNet, build_exudate_network
from monai_exudate.networks.hed import HED, HEDHead
from monai_exudate.networks.pretrained import init_head_weights, load_pretrained_backbone
from monai_exudate.networks.pspnet import AuxHead, PSPHead, PSPNet
from monai_exudate.networks.resnet import Bottleneck, DilatedResNet
from monai_exudate.networks.vgg import VGG16Backbone

__all__ = [
    "ARCHITECTURES",
    "ASPPHead",
    "AuxHead",
    "Bottleneck",
    "DeepLabV3",
    "DilatedResNet",
    "DualBranchNet",
    "HED",
    "HEDHead",
    "PSPHead",
    "PSPNet",
    "VGG16Backbone",
    "build_exudate_network",
    "init_head_weights",
    "load_pretrained_backbone",
]
