"""Segmentation networks with one output contract: PSPNet, DeepLabv3, HED, U-Net, HRDecoder and dual-branch."""

from monai_exudate.networks.deeplabv3 import ASPPHead, DeepLabV3
from monai_exudate.networks.dual_branch import DualBranchNet, HEDBranch, ResNetBranch
from monai_exudate.networks.factory import ARCHITECTURES, build_exudate_network
from monai_exudate.networks.fusion import BRANCH_FUSIONS, check_fusion, fuse_branch_logits, split_branches
from monai_exudate.networks.hed import HED, HEDHead, hed_parameter_groups
from monai_exudate.networks.hrdecoder import FCNHead, HRDecoder, build_hrdecoder, window_boxes
from monai_exudate.networks.hrnet import HRNetV2, load_hrnet_checkpoint
from monai_exudate.networks.pretrained import init_head_weights, load_pretrained_backbone
from monai_exudate.networks.pspnet import AuxHead, PSPHead, PSPNet
from monai_exudate.networks.resnet import Bottleneck, DilatedResNet
from monai_exudate.networks.segmentation_model import LOGITS, SegmentationModel
from monai_exudate.networks.unet import UNet, UNetBranch, UNetEncoder
from monai_exudate.networks.vgg import VGG16Backbone

__all__ = [
    "ARCHITECTURES",
    "BRANCH_FUSIONS",
    "ASPPHead",
    "AuxHead",
    "Bottleneck",
    "DeepLabV3",
    "DilatedResNet",
    "DualBranchNet",
    "FCNHead",
    "HED",
    "HEDBranch",
    "HEDHead",
    "HRDecoder",
    "HRNetV2",
    "LOGITS",
    "PSPHead",
    "PSPNet",
    "ResNetBranch",
    "SegmentationModel",
    "UNet",
    "UNetBranch",
    "UNetEncoder",
    "VGG16Backbone",
    "build_exudate_network",
    "build_hrdecoder",
    "check_fusion",
    "fuse_branch_logits",
    "hed_parameter_groups",
    "init_head_weights",
    "load_hrnet_checkpoint",
    "load_pretrained_backbone",
    "split_branches",
    "window_boxes",
]
