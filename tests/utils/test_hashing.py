"""A file's SHA-256 is that of its bytes, however many read blocks they span."""

from __future__ import annotations

import hashlib

from monai_exudate.utils.hashing import file_sha256


def test_file_sha256_equals_the_hash_of_the_bytes(tmp_path):
    data = bytes(range(256)) * 8193  # just over two 1 MiB blocks
    path = tmp_path / "model.pt"
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()
    path.write_bytes(b"")
    assert file_sha256(path) == hashlib.sha256(b"").hexdigest()
