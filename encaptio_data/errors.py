"""The errors the platform reports to people.

Every failure an operator can cause or meet (bad settings, an unreachable store, an
invalid key, a corrupt object) is raised as an ``EncaptioError`` whose message is one
line that names the setting, key or id at fault. The CLI prints that line and exits
non-zero; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class EncaptioError(Exception):
    """A failure with a one-line, user-facing explanation."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


class SettingsError(EncaptioError):
    """A setting (ENCAPTIO_* variable) is missing, malformed or inconsistent."""


class StoreUnavailableError(EncaptioError):
    """A store (database, object store, vector store, cache) cannot be reached."""


class InvalidKeyError(EncaptioError, ValueError):
    """An object key that could escape its namespace or is otherwise unusable."""


class ObjectNotFoundError(EncaptioError, KeyError):
    """No such object key or version."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return self.args[0] if self.args else ""


class IntegrityError(EncaptioError):
    """Stored bytes do not match their recorded checksum, or a write was refused for that reason."""


class NotFoundError(EncaptioError, LookupError):
    """An id (organization, user, capsule, content) that does not exist."""


class InvalidInputError(EncaptioError, ValueError):
    """A value given by a person or a caller that the model cannot accept."""


class PermissionDeniedError(EncaptioError, PermissionError):
    """The acting operator (or system principal) may not do this, or not in that organization."""
