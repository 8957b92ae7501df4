"""Inference helpers: input listing for folders, datalists and single files."""

from monai_exudate.inference.inputs import list_inference_inputs

__all__ = ["list_inference_inputs"]
