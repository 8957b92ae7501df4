"""Lesion segmentation in colour fundus photographs: dual-branch DSM and HRDecoder, on MONAI."""

__version__ = "0.1.0"
