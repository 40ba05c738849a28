"""Errors a user can cause. The CLI prints them as one line, without a traceback."""


class UserError(Exception):
    """A mistake in the user's input (file, config key, value, checkpoint).

    The message must name the file, key or value and say what is wrong, on one line.
    """


class CheckpointError(UserError):
    """A weights file that cannot be read, is unsafe, or does not fit the model."""


class ConfigError(UserError):
    """A config key, value or type that is wrong."""


class VideoReadError(UserError):
    """A video that cannot be decoded (missing, truncated, not a video, no frames)."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")
