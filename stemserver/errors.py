"""The errors stemserver raises on purpose.

Every one carries a message written for the person who has to act on it: what went wrong and
what to do. The CLI prints it and exits 1; the server turns it into a typed error reply.
"""


class StemserverError(Exception):
    """Base class: an expected failure with a message meant for the user."""


class AudioError(StemserverError):
    """An audio file or buffer cannot be used (unreadable, empty, silent, NaN, too long...)."""


class CheckpointError(StemserverError):
    """A checkpoint bundle is missing, corrupt, or not a stemserver checkpoint."""


class ConfigError(StemserverError):
    """A configuration file or value is invalid."""


class TextModelError(StemserverError):
    """A text-embedding backend cannot be loaded or used."""


class UnknownLabelError(TextModelError):
    """An instrument label has no cached embedding and no text model is available to embed it."""


class LibraryError(StemserverError):
    """The library cannot be used as asked (missing, built with another model, damaged...)."""
