"""The one rule that reads a yes/no setting, however it arrives (JSON, the command line or Python)."""

from __future__ import annotations

from typing import Any

TRUE_WORDS = frozenset({"true", "1", "yes"})
FALSE_WORDS = frozenset({"false", "0", "no"})


def as_bool(value: Any, name: str) -> bool:
    """Read the switch ``name``: ``True``/``False``, ``1``/``0``, or ``true``/``false``, ``yes``/``no`` in any case.

    ``python -m monai.bundle run ... --synthetic false`` hands the config the string ``'false'`` (fire parses only
    Python literals), which plain truthiness would read as true; every boolean of the bundles' configs goes
    through here instead. Any other value raises ``ValueError`` naming the setting and the value.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
    raise ValueError(f"setting {name!r} must be true or false (true/false, yes/no or 1/0, any case), got {value!r}")
