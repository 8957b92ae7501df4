"""Lesion names and the on-disk folder layouts of the public fundus lesion datasets."""

from __future__ import annotations

# The four lesions segmented by the methods, in the order used for multi-label outputs.
LESIONS: tuple[str, ...] = ("EX", "HE", "SE", "MA")
# IDRiD also ships optic-disc masks; they are indexed but never a training target by default.
IDRID_MASKS: tuple[str, ...] = ("MA", "HE", "EX", "SE", "OD")

IDRID_IMAGE_DIR = "A. Segmentation/1. Original Images"
IDRID_MASK_DIR = "A. Segmentation/2. All Segmentation Groundtruths"
IDRID_SPLIT_DIRS: dict[str, str] = {"training": "a. Training Set", "testing": "b. Testing Set"}
IDRID_LESION_DIRS: dict[str, str] = {
    "MA": "1. Microaneurysms",
    "HE": "2. Haemorrhages",
    "EX": "3. Hard Exudates",
    "SE": "4. Soft Exudates",
    "OD": "5. Optic Disc",
}
# Official split: IDRiD_01..54 train, IDRiD_55..81 test.
IDRID_TRAIN_IDS = range(1, 55)
IDRID_TEST_IDS = range(55, 82)

DDR_ROOT = "lesion_segmentation"
DDR_SPLIT_DIRS: dict[str, str] = {"training": "train", "validation": "valid", "testing": "test"}
DDR_LESIONS: tuple[str, ...] = ("EX", "HE", "MA", "SE")

# Resize presets (width, height) from the papers' preprocessing.
RESOLUTION_PRESETS: dict[str, tuple[int, int]] = {"idrid": (1440, 960), "ddr": (1024, 1024)}


def idrid_image_path(split: str, index: int) -> str:
    """Relative path of IDRiD image number ``index`` in ``split`` (``training`` or ``testing``)."""
    return f"{IDRID_IMAGE_DIR}/{IDRID_SPLIT_DIRS[split]}/IDRiD_{index:02d}.jpg"


def idrid_mask_path(split: str, index: int, lesion: str) -> str:
    """Relative path of the ``lesion`` mask of IDRiD image number ``index`` in ``split``."""
    return f"{IDRID_MASK_DIR}/{IDRID_SPLIT_DIRS[split]}/{IDRID_LESION_DIRS[lesion]}/IDRiD_{index:02d}_{lesion}.tif"


def ddr_image_path(split: str, stem: str) -> str:
    """Relative path of the DDR image ``stem`` in ``split`` (``training``, ``validation`` or ``testing``)."""
    return f"{DDR_ROOT}/{DDR_SPLIT_DIRS[split]}/image/{stem}.jpg"


def ddr_mask_path(split: str, stem: str, lesion: str) -> str:
    """Relative path of the ``lesion`` mask of DDR image ``stem`` in ``split``."""
    return f"{DDR_ROOT}/{DDR_SPLIT_DIRS[split]}/label/{lesion}/{stem}.tif"
