"""Glue between MONAI bundle runs and the package: bundle location, switch parsing, setting checks, readable errors."""

from monai_exudate.bundle.errors import error_summary, install_error_summary, root_cause
from monai_exudate.bundle.overrides import SettingsError, check_run_settings, current_run_settings
from monai_exudate.bundle.paths import find_bundle_root
from monai_exudate.bundle.settings import as_bool
from monai_exudate.bundle.startup import start_run

__all__ = [
    "SettingsError",
    "as_bool",
    "check_run_settings",
    "current_run_settings",
    "error_summary",
    "find_bundle_root",
    "install_error_summary",
    "root_cause",
    "start_run",
]
