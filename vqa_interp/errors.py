"""Errors a user can act on: each message names the config key or file, what was expected, the fix."""


class VqaInterpError(Exception):
    """Base class of the tool's own, user-facing errors."""


class ConfigError(VqaInterpError, ValueError):
    """A config value is out of range or unknown."""


class NotApplicableError(ConfigError):
    """A method the model cannot serve (it lacks what the method needs): in a sweep over models and
    methods such a pair is listed as not applicable, not as a failed job."""


class DataError(VqaInterpError):
    """An input file is missing or malformed."""


class CheckpointError(VqaInterpError):
    """A model checkpoint or backbone weight file is missing or unusable."""
