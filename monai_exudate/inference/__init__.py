"""Inference: input listing, the streaming runner, lesion quantification, output writers and folder records."""

from monai_exudate.inference.calibration import CalibratedSigmoidd, package_calibration
from monai_exudate.inference.dataset import (
    MAX_ASPECT_RATIO,
    MAX_IMAGE_PIXELS,
    MIN_SIDE,
    InferenceDataset,
    check_image_file,
    collate_inference,
)
from monai_exudate.inference.exported import OnnxRuntimeNetwork, load_exported_network
from monai_exudate.inference.flip_inferer import FlipAveragedInferer
from monai_exudate.inference.inputs import folder_entries, list_inference_inputs
from monai_exudate.inference.model_package import DEMO_MODEL_WARNING, model_origin, package_settings, read_model_package
from monai_exudate.inference.postprocessing import FuseBranchLogitsd
from monai_exudate.inference.quantify import SUMMARY_FIELDS, field_of_view_pixels, lesion_statistics, summary_rows
from monai_exudate.inference.records import FolderInUseError, RunManifest
from monai_exudate.inference.run_state import InferenceReport
from monai_exudate.inference.runner import FundusInferenceRunner
from monai_exudate.inference.summary import SummaryTable
from monai_exudate.inference.threshold_file import load_operating_threshold, recorded_map_setting
from monai_exudate.inference.weights import load_network_weights
from monai_exudate.inference.writers import LESION_COLOURS, OutputLayout, lesion_colours, paint_overlay

__all__ = [
    "CalibratedSigmoidd",
    "DEMO_MODEL_WARNING",
    "LESION_COLOURS",
    "MAX_ASPECT_RATIO",
    "MAX_IMAGE_PIXELS",
    "MIN_SIDE",
    "SUMMARY_FIELDS",
    "FlipAveragedInferer",
    "FolderInUseError",
    "FuseBranchLogitsd",
    "FundusInferenceRunner",
    "InferenceDataset",
    "InferenceReport",
    "OnnxRuntimeNetwork",
    "OutputLayout",
    "RunManifest",
    "SummaryTable",
    "check_image_file",
    "collate_inference",
    "field_of_view_pixels",
    "folder_entries",
    "lesion_colours",
    "lesion_statistics",
    "list_inference_inputs",
    "load_exported_network",
    "load_network_weights",
    "load_operating_threshold",
    "model_origin",
    "package_calibration",
    "package_settings",
    "paint_overlay",
    "read_model_package",
    "recorded_map_setting",
    "summary_rows",
]
