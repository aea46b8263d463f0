"""Hyper-parameter presets: a named preset overlaid with config overrides."""

from __future__ import annotations

from scpert.errors import InputError


def resolve_preset(presets: dict[str, dict], preset: str, overrides: dict | None, key: str) -> dict:
    """``presets[preset]`` overlaid with ``overrides``; an unknown preset or parameter raises one
    message naming the config key (``<key>.preset`` / ``<key>.params``)."""
    if preset not in presets:
        raise InputError(f"{key}.preset: unknown preset '{preset}' (known: {', '.join(presets)})")
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(presets[preset]))
    if unknown:
        raise InputError(
            f"{key}.params: unknown key(s) {unknown} (known: {', '.join(presets[preset])})"
        )
    return {**presets[preset], **overrides}
