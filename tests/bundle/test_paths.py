"""The one rule that finds a bundle's folder, from the repository root, the bundle folder or anywhere else."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from monai_exudate.bundle import find_bundle_root

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("bundle", ["exudate_dsm", "fundus_lesion_hrdecoder"])
def test_found_from_the_repository_root_the_bundle_folder_and_elsewhere(bundle, tmp_path):
    expected = str((REPO / "bundles" / bundle).resolve())
    assert find_bundle_root(bundle, REPO) == expected
    assert find_bundle_root(bundle, REPO / "bundles" / bundle) == expected
    assert find_bundle_root(bundle, tmp_path) == expected  # beside the installed package


def test_a_renamed_copy_run_from_inside_is_itself(tmp_path):
    copy = tmp_path / "exudate_dsm_v0.5"
    shutil.copytree(REPO / "bundles" / "exudate_dsm" / "configs", copy / "configs")
    assert find_bundle_root("exudate_dsm", copy) == str(copy.resolve())
    # the other bundle's folder is not taken for this one
    assert find_bundle_root("fundus_lesion_hrdecoder", copy) != str(copy.resolve())


def test_every_bundle_config_uses_the_rule():
    for config in (REPO / "bundles").glob("*/configs/*.json"):
        text = config.read_text()
        if '"bundle_root"' in text:
            assert f"find_bundle_root('{config.parents[1].name}')" in text, config


def test_unknown_bundle_names_where_it_looked(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"bundle 'spleen' not found .*--bundle_root"):
        find_bundle_root("spleen", tmp_path)
