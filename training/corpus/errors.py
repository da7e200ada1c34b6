"""The one error the corpus builder raises on purpose."""

from stemserver.errors import StemserverError


class CorpusError(StemserverError):
    """The corpus cannot be built: a missing tool or soundfont, a bad output folder, a bad option."""
