"""End a failed bundle run with the real error: MONAI buries it under ``Failed to evaluate ConfigExpression``."""

from __future__ import annotations

import sys
from types import TracebackType

from monai.bundle import ConfigParser

from monai_exudate.bundle.monai_internals import ERROR_SUMMARY, raised_by_monai_wrapper, resolving_ids, warn_disabled


def root_cause(exc: BaseException) -> BaseException:
    """The error under MONAI's wrappers: the first exception of the ``__cause__`` chain that MONAI did not raise."""
    while raised_by_monai_wrapper(exc):
        exc = exc.__cause__  # type: ignore[assignment]
    return exc


def config_path(exc: BaseException) -> list[str]:
    """The config items MONAI was resolving when ``exc`` was raised, outermost first (``run#0``, ``train#trainer``…)."""
    ids: list[str] = []
    while True:
        for item in resolving_ids(exc):
            if not ids or ids[-1] != item:
                ids.append(item)
        if not raised_by_monai_wrapper(exc):
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


def error_summary_works() -> bool:
    """Whether this MONAI's wrappers are still recognised: a known failure must read back as its error and items.

    :func:`root_cause` and :func:`config_path` read MONAI internals (:mod:`~monai_exudate.bundle.monai_internals`);
    a changed MONAI would make them silently return the wrapper, so they are tried once on a two-item config.
    """
    try:
        ConfigParser({"a": "$1 // 0", "b": "$@a"}).get_parsed_content("b")
    except Exception as err:  # whatever MONAI raises is compared below
        return isinstance(root_cause(err), ZeroDivisionError) and config_path(err) == ["b", "a"]
    return False


def install_error_summary() -> None:
    """Make an uncaught error of this process end with :func:`error_summary` after the usual traceback.

    MONAI re-raises every error of a config as ``RuntimeError: Failed to evaluate ...`` (once per level of
    references), so the user's last lines would hide the message that names the setting or file; only the
    interpreter's ``sys.excepthook`` sees the final error, hence this one process-wide hook. Installing twice
    keeps one hook. Where :func:`error_summary_works` says this MONAI's wrappers are no longer recognised, a
    :class:`~monai_exudate.bundle.monai_internals.MonaiInternalsWarning` says so and no hook is installed.
    """
    if getattr(sys.excepthook, "summarises_bundle_errors", False):
        return
    if not error_summary_works():
        warn_disabled(ERROR_SUMMARY, "MONAI no longer raises a config's errors under the wrappers the summary reads")
        return
    sys.excepthook = _summarising_hook(sys.excepthook)
