"""Glue between MONAI bundle runs and the package: switch parsing, setting checks and readable errors."""

from monai_exudate.bundle.errors import error_summary, install_error_summary, root_cause
from monai_exudate.bundle.overrides import SettingsError, check_run_settings, current_run_settings
from monai_exudate.bundle.settings import as_bool
from monai_exudate.bundle.startup import start_run

__all__ = [
    "SettingsError",
    "as_bool",
    "check_run_settings",
    "current_run_settings",
    "error_summary",
    "install_error_summary",
    "root_cause",
    "start_run",
]
