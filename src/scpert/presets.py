"""Hyper-parameter presets: a named, complete preset overlaid with config overrides, checked.

Used by every configurable part (methods through :class:`scpert.methods.registry.MethodSpec`, the
priors, the latent space): a preset lists every parameter, an override must name one of them and
have the kind of value its default has, and enumerated parameters must take an allowed value.
Each error is one line naming the config key (``<key>.preset``, ``<key>.params.<name>``).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from scpert.errors import ConfigError


def resolve_preset(
    presets: Mapping[str, Mapping[str, Any]],
    preset: str,
    overrides: Mapping[str, Any] | None,
    key: str,
    choices: Mapping[str, Sequence[Any]] | None = None,
) -> dict[str, Any]:
    """``presets[preset]`` overlaid with ``overrides`` (deep copies), checked as described above."""
    if preset not in presets:
        raise ConfigError(f"{key}.preset: unknown preset '{preset}' (known: {', '.join(presets)})")
    params = copy.deepcopy(dict(presets[preset]))
    for name, value in (overrides or {}).items():
        if name not in params:
            raise ConfigError(
                f"{key}.params.{name}: unknown parameter (known: {', '.join(sorted(params))})"
            )
        check_kind(f"{key}.params.{name}", value, params[name])
        params[name] = copy.deepcopy(value)
    for name, allowed in (choices or {}).items():
        if name in params and params[name] not in allowed:
            raise ConfigError(
                f"{key}.params.{name}: {params[name]!r} is not allowed "
                f"(allowed: {', '.join(map(str, allowed))})"
            )
    return params


_KINDS = (
    (bool, (bool,)),
    (int, (int,)),
    (float, (int, float)),
    (str, (str,)),
    ((list, tuple), (list, tuple)),
    (dict, (dict,)),
)


def check_kind(key: str, value: Any, default: Any) -> None:
    """``value`` must be the kind of value ``default`` is (a default of None accepts anything;
    an int default accepts no float and a number no bool)."""
    if default is None or value is None:
        return
    for kind, accepted in _KINDS:
        if isinstance(default, kind):
            is_bool = isinstance(value, bool) and not isinstance(default, bool)
            if not isinstance(value, accepted) or is_bool:
                raise ConfigError(
                    f"{key}: expected {type(default).__name__} like the preset's {default!r}, "
                    f"got {type(value).__name__} {value!r}"
                )
            return
