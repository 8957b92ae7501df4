"""Refuse a bundle run whose settings name nothing in its configs (``--max_epoch`` for ``max_epochs``)."""

from __future__ import annotations

import difflib
import inspect
import pydoc
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import monai.bundle
from monai.bundle import DEFAULT_EXP_MGMT_SETTINGS, ID_SEP_KEY, ConfigParser, ConfigWorkflow, ReferenceResolver

from monai_exudate.bundle.monai_internals import create_workflow_call
from monai_exudate.utils.booleans import as_bool

# arguments of MONAI's run functions themselves, never config settings
RUN_ARGUMENTS = frozenset({"workflow_name", "config_file", "args_file", "meta_file", "logging_file", "tracking"})
META_KEY = "_meta_"


class SettingsError(ValueError):
    """A bundle run was given settings that are unknown to its configs or hold a value they cannot take."""


@dataclass(frozen=True)
class RunSettings:
    """What a bundle run was started with: its config files, meta file, tracking choice and setting overrides."""

    config_files: list[str]
    overrides: dict[str, Any]
    meta_file: str | None = None
    tracking: Any = None


def _config_files(config_file: Any) -> list[str]:
    if config_file is None:
        return []
    if isinstance(config_file, str):
        # MONAI also reads "a.json,b.json" as two files
        return config_file.split(",") if not Path(config_file).is_file() and "," in config_file else [config_file]
    return [str(f) for f in config_file]


def _workflow_class(workflow_name: Any) -> type:
    """The workflow class ``create_workflow`` builds for ``workflow_name``: a class, a name in ``monai.bundle`` or a
    dotted path; MONAI's default ``ConfigWorkflow`` when none or not found (MONAI itself then refuses the run)."""
    if isinstance(workflow_name, str):
        found = getattr(monai.bundle, workflow_name, None) or pydoc.locate(workflow_name)
        return found if isinstance(found, type) else ConfigWorkflow
    return workflow_name if isinstance(workflow_name, type) else ConfigWorkflow


def current_run_settings() -> RunSettings | None:
    """The settings of the MONAI bundle run that is being initialised, or None outside of one.

    MONAI passes a config no handle on the run that parses it, so they are read from the ``create_workflow`` call
    of the run (:func:`~monai_exudate.bundle.monai_internals.create_workflow_call`, with an ``--args_file`` merged
    in). A config parsed by hand with ``ConfigParser`` has no such call and is not checked; with a MONAI whose
    ``create_workflow`` no longer reads as expected a warning says the check is off.
    """
    call = create_workflow_call()
    if call is None:
        return None
    workflow_class = _workflow_class(call.workflow_name)
    own = set(RUN_ARGUMENTS) | {
        name
        for name, p in inspect.signature(workflow_class.__init__).parameters.items()
        if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and name != "self"
    }
    config_files = _config_files(call.config_file)
    meta_file = call.arguments.get("meta_file")
    if meta_file is None and config_files and issubclass(workflow_class, ConfigWorkflow):
        meta_file = str(Path(config_files[0]).parent / "metadata.json")  # ConfigWorkflow's documented default
    return RunSettings(
        config_files=config_files,
        overrides={k: v for k, v in call.arguments.items() if k not in own},
        meta_file=meta_file if isinstance(meta_file, str) else None,
        tracking=call.arguments.get("tracking"),
    )


def _tracking_settings(tracking: Any) -> list[str]:
    """Top-level settings that MONAI's ``--tracking`` adds to a run (``save_execute_config`` etc.)."""
    if tracking is None:
        return []
    if isinstance(tracking, str) and tracking in DEFAULT_EXP_MGMT_SETTINGS:
        settings = DEFAULT_EXP_MGMT_SETTINGS[tracking]
    elif isinstance(tracking, Mapping):
        settings = tracking
    else:
        settings = ConfigParser.load_config_files(tracking)
    return list(settings.get("configs", {}))


def setting_problems(
    overrides: Mapping[str, Any],
    config: Mapping[str, Any],
    extra_names: Iterable[str] = (),
) -> list[str]:
    """Describe every override that ``config`` (the merged config files of a run) cannot take; empty when all fit.

    A top-level name must be defined by the config, and so must every part of a path ``a#b#c``, except that the
    last part may add an argument to a component (a dictionary with ``_target_``). A top-level name that the config
    defines only inside a settings section is refused with the path to give (``net_width``:
    ``model_settings#net_width``). A value given to a setting whose default is a JSON boolean (``synthetic``,
    ``model_settings#dual``) must read as one (:func:`~monai_exudate.utils.booleans.as_bool`: the recipes read it
    so); one given to a yes/no argument inside a component (``validate#dataloader#shuffle``), which no config
    parses, must be a Python ``True``/``False``.
    """
    parser = ConfigParser(dict(config))
    extra = set(extra_names)
    problems = []
    for key, value in overrides.items():
        parts = ReferenceResolver.split_id(ReferenceResolver.normalize_id(str(key).lstrip("+")))
        if parts[0] == META_KEY and META_KEY not in config:
            continue
        if len(parts) == 1 and parts[0] in extra:
            continue
        # the last part of a path may add an argument to a component, never a name to a plain dictionary
        adds_argument = len(parts) > 1 and _is_component(parser, parts[:-1])
        missing = _first_missing(parser, parts[:-1] if adds_argument else parts)
        if missing is not None:
            problems.append(_unknown(key, parser, parts[: missing + 1], extra))
            continue
        if _first_missing(parser, parts) is not None or not isinstance(parser[ID_SEP_KEY.join(parts)], bool):
            continue
        if len(parts) > 1 and not isinstance(value, bool) and _is_component(parser, parts[:-1]):
            # a component argument reaches its class as given: the string 'false' would act as true there
            problems.append(f"{key!r} is a component's yes/no argument: give it as True or False, got {value!r}")
            continue
        try:
            as_bool(value, key)
        except ValueError as err:
            problems.append(str(err).replace("setting ", "", 1))
    return problems


def _children(parser: ConfigParser, parts: Sequence[str]) -> list[str]:
    node = parser.get(ID_SEP_KEY.join(parts)) if parts else parser.get()
    if isinstance(node, Mapping):
        return [str(k) for k in node]
    if isinstance(node, list):
        return [str(i) for i in range(len(node))]
    return []


def _is_component(parser: ConfigParser, parts: Sequence[str]) -> bool:
    node = parser.get(ID_SEP_KEY.join(parts))
    return isinstance(node, Mapping) and "_target_" in node


def _section_keys(parser: ConfigParser, name: str) -> list[str]:
    """The keys of the top-level plain dictionary ``name`` (a settings section); none for a component or a value."""
    plain = isinstance(parser.get(name), Mapping) and not _is_component(parser, [name])
    return _children(parser, [name]) if plain else []


def _first_missing(parser: ConfigParser, parts: Sequence[str]) -> int | None:
    for i, part in enumerate(parts):
        if part not in _children(parser, parts[:i]):
            return i
    return None


def _unknown(key: str, parser: ConfigParser, parts: Sequence[str], extra: set[str]) -> str:
    prefix = "#".join(parts[:-1])
    names = _children(parser, parts[:-1]) + (sorted(extra) if len(parts) == 1 else [])
    candidates = {name: f"{prefix}#{name}" if prefix else name for name in names}
    if not prefix:  # a top-level name may be a misspelling of a setting in a section (max_epoch: training_recipe#...)
        sections = {s: _section_keys(parser, s) for s in _children(parser, [])}
        moved = [f"{s}#{parts[-1]}" for s, keys in sections.items() if parts[-1] in keys]
        if moved:
            return f"{key!r} is not a top-level setting: give it as {' or '.join(moved)}"
        for section, keys in sections.items():
            candidates.update({k: f"{section}#{k}" for k in keys if k not in candidates})
    close = difflib.get_close_matches(parts[-1], list(candidates), n=3, cutoff=0.6)
    hint = ("; closest: " + ", ".join(candidates[c] for c in close)) if close else ""
    if not prefix:
        return f"{key!r} is not defined by any config of the run{hint}"
    return f"{key!r}: {parts[-1]!r} is not defined in {prefix!r}{hint}"


def check_run_settings(settings: RunSettings | None) -> None:
    """Raise ``SettingsError`` listing every setting of ``settings`` that its config files do not define."""
    if settings is None or not settings.overrides or not settings.config_files:
        return
    config = ConfigParser.load_config_files(settings.config_files)
    if settings.meta_file and Path(settings.meta_file).is_file():
        config[META_KEY] = ConfigParser.load_config_files(settings.meta_file)
    problems = setting_problems(settings.overrides, config, _tracking_settings(settings.tracking))
    if problems:
        files = ", ".join(Path(f).name for f in settings.config_files)
        lines = "\n".join(f"  - {p}" for p in problems)
        raise SettingsError(f"{len(problems)} setting(s) refused for configs {files}; nothing was run:\n{lines}")
