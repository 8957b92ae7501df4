"""End a failed bundle run with the real error: MONAI buries it under ``Failed to evaluate ConfigExpression``."""

from __future__ import annotations

import sys
from types import TracebackType

from monai.bundle.config_item import ConfigExpression
from monai.bundle.reference_resolver import ReferenceResolver
from monai.utils.module import instantiate

# where MONAI re-raises an error of a config expression or component as a bare RuntimeError
_WRAPPERS = (ConfigExpression.evaluate.__code__, instantiate.__code__)
_RESOLVE = ReferenceResolver._resolve_one_item.__code__


def _frames(tb: TracebackType | None):
    while tb is not None:
        yield tb.tb_frame
        tb = tb.tb_next


def _is_wrapper(exc: BaseException) -> bool:
    if type(exc) is not RuntimeError or exc.__cause__ is None:
        return False
    frames = list(_frames(exc.__traceback__))
    return bool(frames) and frames[-1].f_code in _WRAPPERS


def root_cause(exc: BaseException) -> BaseException:
    """The error under MONAI's wrappers: the first exception of the ``__cause__`` chain that MONAI did not raise."""
    while _is_wrapper(exc):
        exc = exc.__cause__  # type: ignore[assignment]
    return exc


def config_path(exc: BaseException) -> list[str]:
    """The config items MONAI was resolving when ``exc`` was raised, outermost first (``run#0``, ``train#trainer``…)."""
    ids: list[str] = []
    while True:
        for frame in _frames(exc.__traceback__):
            if frame.f_code is _RESOLVE:
                item = str(frame.f_locals.get("id", "")).replace("::", "#")
                if item and (not ids or ids[-1] != item):
                    ids.append(item)
        if not _is_wrapper(exc):
            return ids
        exc = exc.__cause__  # type: ignore[assignment]


def error_summary(exc: BaseException) -> str | None:
    """Lines naming the config item and the real error of a failed run, or None when MONAI did not wrap it."""
    cause = root_cause(exc)
    if cause is exc:
        return None
    ids = config_path(exc)
    where = f" while resolving config item {ids[-1]!r}" if ids else ""
    chain = f" (via {' -> '.join(ids)})" if len(ids) > 1 else ""
    return f"\nThe bundle run failed{where}{chain}:\n{type(cause).__name__}: {cause}"


def _summarising_hook(previous):
    def hook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        previous(exc_type, exc, tb)
        summary = error_summary(exc)
        if summary:
            print(summary, file=sys.stderr)

    hook.summarises_bundle_errors = True  # type: ignore[attr-defined]
    return hook


def install_error_summary() -> None:
    """Make an uncaught error of this process end with :func:`error_summary` after the usual traceback.

    MONAI re-raises every error of a config as ``RuntimeError: Failed to evaluate ...`` (once per level of
    references), so the user's last lines would hide the message that names the setting or file; only the
    interpreter's ``sys.excepthook`` sees the final error, hence this one process-wide hook. Installing twice
    keeps one hook.
    """
    if not getattr(sys.excepthook, "summarises_bundle_errors", False):
        sys.excepthook = _summarising_hook(sys.excepthook)
