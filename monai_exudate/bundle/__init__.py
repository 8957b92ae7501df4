"""Glue between MONAI bundle runs and the package: bundle location, setting checks, readable errors, release files."""

from monai_exudate.bundle.errors import error_summary, install_error_summary, root_cause
from monai_exudate.bundle.overrides import SettingsError, check_run_settings, current_run_settings
from monai_exudate.bundle.paths import find_bundle_root
from monai_exudate.bundle.startup import start_run
from monai_exudate.utils.booleans import as_bool  # configs read their switches as monai_exudate.bundle.as_bool

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
