"""Helpers every layer of the package may use: yes/no parsing, atomic file writes, hashing, JSON-ready values.

The bottom layer: it imports nothing else from the package (``docs/ARCHITECTURE.md``, "Layers").
"""

from monai_exudate.utils.atomic import (
    PARTIAL_SUFFIX,
    atomic_save_image,
    atomic_write_bytes,
    atomic_write_json,
    remove_partial_files,
    write_csv_atomic,
)
from monai_exudate.utils.booleans import FALSE_WORDS, TRUE_WORDS, as_bool
from monai_exudate.utils.hashing import file_sha256
from monai_exudate.utils.json_values import json_round_trip, json_safe

__all__ = [
    "FALSE_WORDS",
    "PARTIAL_SUFFIX",
    "TRUE_WORDS",
    "as_bool",
    "atomic_save_image",
    "atomic_write_bytes",
    "atomic_write_json",
    "file_sha256",
    "json_round_trip",
    "json_safe",
    "remove_partial_files",
    "write_csv_atomic",
]
