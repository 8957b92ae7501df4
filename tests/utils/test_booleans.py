"""The one rule for yes/no settings: every accepted spelling means its value, anything else names the setting."""

from __future__ import annotations

import pytest

from monai_exudate.utils.booleans import as_bool


@pytest.mark.parametrize("value", [True, 1, "1", "true", "True", "TRUE", " yes ", "Yes", "YES"])
def test_true_spellings(value):
    assert as_bool(value, "fov_crop") is True


@pytest.mark.parametrize("value", [False, 0, "0", "false", "False", "FALSE", "no", "No", "NO"])
def test_false_spellings(value):
    assert as_bool(value, "fov_crop") is False


@pytest.mark.parametrize("value", ["maybe", "", "2", 2, -1, 0.0, None, "on", "off", [], "nope"])
def test_anything_else_names_the_setting_and_the_value(value):
    with pytest.raises(ValueError, match=r"setting 'overwrite' must be true or false") as info:
        as_bool(value, "overwrite")
    assert repr(value) in str(info.value)
