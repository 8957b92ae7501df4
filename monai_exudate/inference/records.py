"""Bookkeeping of an inference output folder: what made it (manifest.json), failures across runs, the folder lock.

The manifest holds the ``settings`` that decide what the outputs contain (model file hash, threshold, lesions,
preprocessing, inferer, bundle name and version, ...) and one record per run (run id, times, counts). A run whose
settings differ from the folder's is refused unless it overwrites, so outputs made by two models never mix.
``failures.csv`` keeps every run's rows, told apart by the ``run`` column. One run at a time holds the folder:
``fcntl.flock`` on a lock file, released by the kernel if the process dies, so a killed run never blocks the folder.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import fcntl
import hashlib
import json
import logging
import math
import os
import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from monai_exudate.inference.writers import read_csv
from monai_exudate.utils.atomic import atomic_write_json, write_csv_atomic
from monai_exudate.utils.hashing import file_sha256

logger = logging.getLogger(__name__)

MANIFEST_FILE = "manifest.json"
LOCK_FILE = ".inference.lock"
FAILURE_FIELDS = ("run", "image", "reason")
_OLD_FAILURE_FIELDS = ("image", "reason")  # failures.csv before the run column: its rows get run ""
_MAX_LISTED = 16  # longer arrays are described by shape and hash
# attributes that do not change outputs: random state, progress display, and the list of image libraries MONAI
# found installed (LoadImage keeps one reader per library; the file's reader is chosen from it)
# identities, not settings: an exported model's file path and its input tensor's name may change with no effect
_IGNORED_ATTRIBUTES = frozenset({"R", "readers", "progress", "log_stats", "training", "path", "input_name"})


def new_run_id() -> str:
    """A run id that sorts by start time: UTC timestamp and a random suffix."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


def describe_components(obj: Any, depth: int = 6) -> Any:
    """A JSON value describing ``obj``: its settings, not its identity, so equal settings give equal descriptions.

    Numbers, strings and containers are kept, arrays and tensors listed (or hashed when long), functions and classes
    named; other objects become their class and public attributes, ``depth`` objects deep. A network is described by
    its class and its public number, flag and string attributes only (its weights are the model file's hash); a
    post-processing ``Compose`` by its transforms' settings, so a dual network's branch-fusion rule is part of it.
    """
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else str(obj)
    if isinstance(obj, enum.Enum):
        return describe_components(obj.value, depth)
    if isinstance(obj, np.generic):
        return describe_components(obj.item(), depth)
    if isinstance(obj, (torch.device, torch.dtype, np.dtype, os.PathLike)):
        return str(obj)
    if isinstance(obj, (torch.Tensor, np.ndarray)):
        array = obj.detach().cpu().numpy() if isinstance(obj, torch.Tensor) else obj
        if array.size <= _MAX_LISTED:
            return describe_components(array.tolist(), depth)
        return {"shape": list(array.shape), "sha256": hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()}
    if isinstance(obj, nn.Module):
        flags = {
            k: describe_components(v)
            for k, v in sorted(vars(obj).items())
            if not k.startswith("_") and k not in _IGNORED_ATTRIBUTES and isinstance(v, (bool, int, float, str))
        }
        return {"class": _name(type(obj)), **flags}
    if isinstance(obj, Mapping):
        return {str(k): describe_components(v, depth) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        values = sorted(obj, key=repr) if isinstance(obj, (set, frozenset)) else obj
        return [describe_components(v, depth) for v in values]
    if isinstance(obj, type) or _is_function(obj):
        return _name(obj)
    attributes = getattr(obj, "__dict__", None)
    if depth <= 0 or not isinstance(attributes, dict):
        return _name(type(obj))
    public = {
        k: describe_components(v, depth - 1)
        for k, v in sorted(attributes.items())
        if not k.startswith("_") and k not in _IGNORED_ATTRIBUTES
    }
    return {"class": _name(type(obj)), **public}


def folder_identity(
    model_file: str | os.PathLike | None,
    fixed: Mapping[str, Any],
    output_settings: Mapping[str, Any] | None,
    components: Mapping[str, Any],
) -> dict[str, Any]:
    """The settings that decide an output folder's contents: the model file's SHA-256 (its path may change), the
    ``fixed`` values (lesions, threshold, overlay options) and the resolved ``output_settings``, or without them the
    ``components`` described by ``describe_components`` (which a new attribute of a library class changes)."""
    model = None
    if model_file is not None:
        if not Path(model_file).is_file():
            raise FileNotFoundError(f"model_file not found: {model_file}")
        model = {"sha256": file_sha256(model_file)}
    identity: dict[str, Any] = {"model": model, **fixed}
    if output_settings is not None:
        identity["settings"] = output_settings
    else:
        identity.update({name: describe_components(part) for name, part in components.items()})
    return canonical(identity)


def _is_function(obj: Any) -> bool:
    return type(obj).__name__ in ("function", "builtin_function_or_method", "method", "partial")


def _name(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', type(obj).__qualname__)}"


def differences(old: Any, new: Any, path: str = "") -> list[str]:
    """Human-readable ``path: old -> new`` lines where two descriptions differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        lines = []
        for key in sorted(set(old) | set(new), key=str):
            where = f"{path}.{key}" if path else str(key)
            if key not in old or key not in new:
                lines.append(f"{where}: {_short(old.get(key, '(absent)'))} -> {_short(new.get(key, '(absent)'))}")
            else:
                lines.extend(differences(old[key], new[key], where))
        return lines
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [line for i, (a, b) in enumerate(zip(old, new)) for line in differences(a, b, f"{path}[{i}]")]
    return [] if old == new else [f"{path}: {_short(old)} -> {_short(new)}"]


def _short(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def canonical(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``settings`` as they read back from JSON (tuples become lists), so a stored copy compares equal."""
    return json.loads(json.dumps(settings, sort_keys=True, default=str))


def read_manifest(path: str | os.PathLike) -> dict[str, Any] | None:
    """The manifest at ``path`` (None when absent); ``ValueError`` naming the file when it is damaged."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: damaged manifest ({err})") from err
    if not isinstance(manifest, dict) or not isinstance(manifest.get("settings"), dict):
        raise ValueError(f"{path}: damaged manifest (no 'settings' object)")
    return manifest


def write_manifest(path: str | os.PathLike, manifest: Mapping[str, Any]) -> Path:
    """Write the manifest atomically (indented JSON)."""
    return atomic_write_json(manifest, path)


def append_failures(path: str | os.PathLike, run_id: str, failures: Sequence[tuple[str, str]]) -> Path:
    """Rewrite ``failures.csv`` atomically with its earlier rows and this run's ``failures`` (run, image, reason)."""
    path = Path(path)
    rows: list[dict[str, str]] = []
    if path.is_file():
        try:
            rows = read_csv(path, FAILURE_FIELDS)
        except ValueError:
            rows = [{"run": "", **row} for row in read_csv(path, _OLD_FAILURE_FIELDS)]
    rows += [{"run": run_id, "image": image, "reason": reason} for image, reason in failures]
    return write_csv_atomic(path, FAILURE_FIELDS, rows)


class FolderInUseError(RuntimeError):
    """Another run holds the output folder."""


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, run_id: str) -> Iterator[Path]:
    """Hold ``folder`` for one run: an exclusive ``flock`` on ``LOCK_FILE``, refused at once if another run holds it.

    The lock file names the holder (process id, run id) for the refusal's message and is deleted on release; a
    process that dies loses its lock with it, so no stale lock outlives a killed run.
    """
    path = Path(folder) / LOCK_FILE
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            try:
                holder = path.read_text().strip() or "unknown"
            except OSError:
                holder = "unknown"
            raise FolderInUseError(
                f"{folder} is in use by another inference run ({holder}); wait for it to finish or choose "
                "another output_dir"
            ) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the holder released and deleted the file between our open and lock: lock the new one
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}, run {run_id}\n".encode())
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.close(fd)


def utc_now() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def settings_changed(
    manifest: Mapping[str, Any] | None,
    settings: Mapping[str, Any],
    earlier_images: Sequence[str],
    overwrite: bool,
    folder: str | os.PathLike,
) -> bool:
    """Whether the folder's earlier outputs were made with other settings than ``settings`` (so none counts as done).

    Without ``overwrite`` that is refused: ``ValueError`` naming the folder and the settings that differ. A folder
    without a manifest whose summary has rows (made by an older version) counts as made with other settings.
    """
    if manifest is None:
        if not earlier_images:
            return False
        count = len(earlier_images)
        lines = [f"it holds outputs of {count} photographs but no {MANIFEST_FILE}: what made them is unknown"]
    else:
        lines = differences(manifest["settings"], settings)
        if not lines:
            return False
    if overwrite:
        logger.warning("%s was made with other settings; redoing its photographs: %s", folder, "; ".join(lines[:5]))
        return True
    shown = "\n  ".join(lines[:10]) + (f"\n  ... and {len(lines) - 10} more" if len(lines) > 10 else "")
    raise ValueError(
        f"{folder} was made with other settings than this run ({MANIFEST_FILE}: earlier -> now):\n  {shown}\n"
        "set overwrite to redo its photographs with these settings, or choose another output_dir"
    )


class RunManifest:
    """``manifest.json`` of a folder across one run: the settings check, the run's record at its start and end."""

    def __init__(
        self, folder: str | os.PathLike, run_id: str, settings: Mapping[str, Any], run_info: Mapping[str, Any]
    ) -> None:
        self.folder = Path(folder)
        self.path = self.folder / MANIFEST_FILE
        self.run_id = run_id
        self.settings = dict(settings)
        self.record: dict[str, Any] = {"run": run_id, "started": utc_now(), "finished": None, **run_info}
        self.runs: list[dict[str, Any]] = [self.record]

    def check(self, earlier_images: Sequence[str], overwrite: bool) -> bool:
        """Whether the folder's earlier outputs were made with other settings (see ``settings_changed``)."""
        try:
            manifest = read_manifest(self.path)
        except ValueError as err:
            if not overwrite:
                raise ValueError(f"{err}; set overwrite to redo the folder's photographs") from err
            manifest = None
        changed = settings_changed(manifest, self.settings, earlier_images, overwrite, self.folder)
        if manifest is not None and not changed:
            self.runs = [*manifest.get("runs", []), self.record]  # the history goes with the settings
        return changed

    def begin(self, found: int) -> None:
        """Write the manifest before any output of the run: a killed run leaves it describing its outputs."""
        self.record["found"] = found
        write_manifest(self.path, {"settings": self.settings, "runs": self.runs})

    def finish(self, failures_path: str | os.PathLike, report: Any, completed: bool) -> None:
        """Add the run's failures to ``failures_path`` and its counts and end time to the manifest."""
        append_failures(failures_path, self.run_id, report.failed)
        self.record.update(
            finished=utc_now(),
            completed=completed,
            processed=report.processed,
            skipped=report.skipped,
            failed=len(report.failed),
        )
        write_manifest(self.path, {"settings": self.settings, "runs": self.runs})
