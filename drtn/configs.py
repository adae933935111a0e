"""Typed, frozen configs reject unknown keys: one check shared by every ``from_dict`` in the project."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping


def check_known_keys(config_type: type, values: Mapping[str, Any], owner: str | None = None) -> None:
    """Raise ``ValueError: <owner>: unknown key 'x' (known: ...)`` for the first key of ``values`` that is not a
    field of the dataclass ``config_type`` (a typo must never fall back to a default silently).

    Args:
        config_type: the dataclass whose fields are the known keys.
        values: the mapping to check.
        owner: name used in the message; default ``config_type.__name__``.
    """
    known = {field.name for field in dataclasses.fields(config_type)}
    for key in values:
        if key not in known:
            raise ValueError(f"{owner or config_type.__name__}: unknown key {key!r} (known: {', '.join(sorted(known))})")
