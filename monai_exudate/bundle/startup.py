"""What every bundle config does first on initialising: readable errors, then a check of the run's settings."""

from __future__ import annotations

from monai_exudate.bundle.errors import install_error_summary
from monai_exudate.bundle.overrides import check_run_settings, current_run_settings


def start_run() -> None:
    """Install the error summary and refuse settings that no config of the run defines, before any work is done."""
    install_error_summary()
    check_run_settings(current_run_settings())
