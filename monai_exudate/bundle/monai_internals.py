"""The package's one reader of MONAI internals: each reader checks what it finds and warns, never fails, on a change.

MONAI hands a config no handle on the run that parses it, and re-raises a config's errors under wrappers that do
not name the config item. Two start-up features therefore read MONAI internals, and only here:

- the check of a run's settings (:mod:`~monai_exudate.bundle.overrides`) reads the arguments of the
  ``monai.bundle.create_workflow`` call up the stack (MONAI passes them only to the workflow's constructor);
- the error summary (:mod:`~monai_exudate.bundle.errors`) recognises MONAI's wrappers by the code that raises them
  (``ConfigExpression.evaluate``, ``monai.utils.instantiate``) and reads the id of the item
  ``ReferenceResolver._resolve_one_item`` was resolving; ``errors.error_summary_works`` tries them at start-up.

When a newer MONAI no longer has what a reader expects, the reader issues a :class:`MonaiInternalsWarning` naming
the feature that is off, and the run goes on without it. ``bench/monai_next.sh`` tries both on a MONAI pre-release.
"""

from __future__ import annotations

import inspect
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from types import CodeType, FrameType, TracebackType
from typing import Any

import monai

SETTINGS_CHECK = "the check of the run's settings (misspelt names such as --max_epoch, yes/no values)"
ERROR_SUMMARY = "the summary of a failed config's real error and config item"
# the functions of monai.bundle that start a run whose workflow create_workflow builds (the exports build none)
_RUN_STARTERS = frozenset({("monai.bundle.scripts", "run"), ("monai.bundle.scripts", "run_workflow")})


class MonaiInternalsWarning(UserWarning):
    """A start-up feature of the package is off because the installed MONAI lacks an internal it reads."""


def warn_disabled(feature: str, reason: str) -> None:
    """Say that ``feature`` is off for this run, and why; the run goes on."""
    warnings.warn(
        f"{feature} is off: {reason} (monai {monai.__version__}); the run goes on without it. "
        "bench/monai_next.sh shows what the package misses in a MONAI release",
        MonaiInternalsWarning,
        stacklevel=3,
    )


@dataclass(frozen=True)
class CreateWorkflowCall:
    """The arguments of the ``create_workflow`` call that is initialising a bundle run, ``args_file`` merged in."""

    workflow_name: Any  # a class or a class's name, as given (MONAI's default: ConfigWorkflow)
    config_file: Any
    arguments: dict[str, Any]  # every other argument: the workflow's own and the setting overrides


# the parameters of monai.bundle.create_workflow that are read, besides its **kwargs
_PARAMETERS = ("workflow_name", "config_file", "args_file")


def _function(frame: FrameType) -> tuple[str, str]:
    return str(frame.f_globals.get("__name__", "")), frame.f_code.co_name


def create_workflow_call() -> CreateWorkflowCall | None:
    """The ``monai.bundle.create_workflow`` call up the stack, or None outside of one.

    ``python -m monai.bundle run``, ``monai.bundle.run``, ``run_workflow`` and ``create_workflow`` all build and
    initialise their workflow in it; its public parameters (``workflow_name``, ``config_file``, ``args_file`` and
    ``**kwargs``) are read from its frame and merged as MONAI merges them (``monai.bundle.update_kwargs``). A decorator
    around it is looked through. A workflow built by hand (``ConfigWorkflow(...)``) or a config parsed with
    ``ConfigParser`` (``ckpt_export`` too) has no such call and gives None silently; a run whose call cannot be
    read warns (:func:`warn_disabled`) and gives None.
    """
    try:
        from monai.bundle import create_workflow, update_kwargs

        function = inspect.unwrap(create_workflow)
        code = function.__code__
        parameters = inspect.signature(function).parameters
    except (ImportError, AttributeError, TypeError, ValueError) as err:
        warn_disabled(SETTINGS_CHECK, f"monai.bundle.create_workflow cannot be read ({err})")
        return None
    overrides = [n for n, p in parameters.items() if p.kind is p.VAR_KEYWORD]
    if not set(_PARAMETERS) <= set(parameters) or not overrides:
        warn_disabled(
            SETTINGS_CHECK,
            f"monai.bundle.create_workflow{inspect.signature(function)} no longer takes "
            f"{', '.join(_PARAMETERS)} and **kwargs",
        )
        return None
    started_by_run = False
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        if frame.f_code is code:
            local = frame.f_locals
            missing = [n for n in (*_PARAMETERS, overrides[0]) if n not in local]
            if missing or not isinstance(local[overrides[0]], dict):
                warn_disabled(
                    SETTINGS_CHECK, f"the frame of monai.bundle.create_workflow lacks the parameters {missing}"
                )
                return None
            try:
                arguments = update_kwargs(
                    args=local["args_file"],
                    workflow_name=local["workflow_name"],
                    config_file=local["config_file"],
                    **local[overrides[0]],
                )
            except Exception as err:  # the run itself went past this merge; this reading must not stop it
                warn_disabled(SETTINGS_CHECK, f"monai.bundle.update_kwargs cannot merge the run's arguments ({err})")
                return None
            return CreateWorkflowCall(
                workflow_name=arguments.pop("workflow_name", None),
                config_file=arguments.pop("config_file", None),
                arguments=arguments,
            )
        started_by_run = started_by_run or _function(frame) in _RUN_STARTERS
        frame = frame.f_back
    if started_by_run:
        warn_disabled(SETTINGS_CHECK, "monai.bundle's run no longer goes through monai.bundle.create_workflow")
    return None


def _code(function: Any) -> CodeType | None:
    code = getattr(inspect.unwrap(function), "__code__", None) if callable(function) else None
    return code if isinstance(code, CodeType) else None


def _error_codes() -> tuple[tuple[CodeType, ...], CodeType | None]:
    """The code of MONAI's two wrappers of a config's errors, and of the function resolving one config item."""
    from monai.bundle import ConfigExpression, ReferenceResolver
    from monai.utils import instantiate

    wrappers = (_code(getattr(ConfigExpression, "evaluate", None)), _code(instantiate))
    return tuple(c for c in wrappers if c is not None), _code(getattr(ReferenceResolver, "_resolve_one_item", None))


def frames(tb: TracebackType | None) -> Iterator[FrameType]:
    """The frames of a traceback, outermost first."""
    while tb is not None:
        yield tb.tb_frame
        tb = tb.tb_next


def raised_by_monai_wrapper(exc: BaseException) -> bool:
    """Whether ``exc`` is the bare ``RuntimeError`` MONAI raises over a config expression's or component's error."""
    if type(exc) is not RuntimeError or exc.__cause__ is None:
        return False
    last = list(frames(exc.__traceback__))[-1:]
    return bool(last) and last[0].f_code in _error_codes()[0]


def resolving_ids(exc: BaseException) -> list[str]:
    """The ids of the config items MONAI was resolving where ``exc`` passed, outermost first (``run#0``, ``a#b``)."""
    resolve = _error_codes()[1]
    ids = []
    for frame in frames(exc.__traceback__):
        if resolve is not None and frame.f_code is resolve:
            item = str(frame.f_locals.get("id", "")).replace("::", "#")
            if item and (not ids or ids[-1] != item):
                ids.append(item)
    return ids
