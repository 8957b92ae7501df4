"""Training and evaluation engines: the dual-branch trainer and its Ignite handlers."""

from monai_exudate.engines import samples
from monai_exudate.engines.alpha_schedule import AlphaScheduleHandler
from monai_exudate.engines.aux_outputs import ForwardWithAuxInferer, forward_with_aux
from monai_exudate.engines.checkpoint_saver import AtomicCheckpointSaver
from monai_exudate.engines.dual_branch_trainer import DualBranchPrepareBatch, DualBranchTrainer
from monai_exudate.engines.finite import NonFiniteWeightsError
from monai_exudate.engines.metrics_report import MetricsReportWriter
from monai_exudate.engines.mlflow_logging import MLflowModelHandler
from monai_exudate.engines.model_package import PACKAGE_FILE, ModelPackageWriter
from monai_exudate.engines.nonfinite_loss import NonFiniteLossError, NonFiniteLossHandler
from monai_exudate.engines.nonfinite_output import FiniteCheckpointLoader, NonFiniteOutputError, NonFiniteOutputHandler
from monai_exudate.engines.operating_threshold import OperatingThresholdHandler
from monai_exudate.engines.overlays import ValidationOverlayHandler, overlay_errors
from monai_exudate.engines.pr_curve import PRCurveHandler, draw_pr_curve
from monai_exudate.engines.resume import ResumeHandler, latest_checkpoint
from monai_exudate.engines.resume_state import ResumeState

__all__ = [
    "PACKAGE_FILE",
    "AlphaScheduleHandler",
    "AtomicCheckpointSaver",
    "DualBranchPrepareBatch",
    "DualBranchTrainer",
    "FiniteCheckpointLoader",
    "ForwardWithAuxInferer",
    "MLflowModelHandler",
    "MetricsReportWriter",
    "ModelPackageWriter",
    "NonFiniteLossError",
    "NonFiniteLossHandler",
    "NonFiniteOutputError",
    "NonFiniteOutputHandler",
    "NonFiniteWeightsError",
    "OperatingThresholdHandler",
    "PRCurveHandler",
    "ResumeHandler",
    "ResumeState",
    "ValidationOverlayHandler",
    "latest_checkpoint",
    "samples",
    "draw_pr_curve",
    "forward_with_aux",
    "overlay_errors",
]
