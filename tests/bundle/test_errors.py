"""A failed config ends with the real error and the config item that raised it, not MONAI's wrapper."""

from __future__ import annotations

import subprocess
import sys

import pytest
from monai.bundle import ConfigParser

from monai_exudate.bundle.errors import config_path, error_summary, root_cause


def _failure() -> RuntimeError:
    parser = ConfigParser(
        {
            "lesions": ["EX"],
            "switch": "$monai_exudate.bundle.as_bool('maybe', 'fov_crop')",
            "pipeline": {"_target_": "monai.transforms.Identity", "_disabled_": "@switch"},
            "run": ["$@pipeline"],
        },
        globals={"monai_exudate": "monai_exudate"},
    )
    with pytest.raises(RuntimeError) as info:
        parser.get_parsed_content("run#0")
    return info.value


def test_root_cause_and_config_path():
    err = _failure()
    assert "Failed to evaluate" in str(err)
    cause = root_cause(err)
    assert isinstance(cause, ValueError) and "'fov_crop'" in str(cause)
    assert config_path(err)[-1] == "switch" and config_path(err)[0] == "run#0"


def test_summary_names_the_item_and_the_cause():
    summary = error_summary(_failure())
    assert summary is not None
    lines = summary.strip().splitlines()
    assert "config item 'switch'" in lines[0]
    assert lines[-1].startswith("ValueError: setting 'fov_crop' must be true or false")
    assert error_summary(ValueError("plain")) is None  # nothing to add when MONAI did not wrap the error


def test_uncaught_error_ends_with_the_summary():
    code = (
        "from monai_exudate.bundle.errors import install_error_summary; install_error_summary();"
        "install_error_summary(); from monai.bundle import ConfigParser;"
        "ConfigParser({'a': '$1 / 0', 'b': '$@a + 1'}).get_parsed_content('b')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1
    assert lines[-1] == "ZeroDivisionError: division by zero"
    assert "config item 'a' (via b -> a)" in lines[-2]
    assert sum("The bundle run failed" in line for line in lines) == 1  # installed twice, printed once
