"""Error types for bad user input: each carries one message naming the file/key and the field."""


class InputError(ValueError):
    """Bad input (data file, config key, split setting); the message names where and what."""


class ConfigError(InputError):
    """The config is well-formed but inconsistent; the message names the key."""
