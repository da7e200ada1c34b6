"""Which files a library holds (audio by extension) and which of them a query may return (filters).

Imports neither torch nor numpy (nor dataclasses: 5 ms): the wire contract (stemserver.server.protocol)
validates file paths and filters with these, and the client that REAPER spawns on every "Find" imports it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from stemserver.library import FileRecord

AUDIO_EXTENSIONS = frozenset({
    ".wav", ".wave", ".bwf", ".aif", ".aiff", ".aifc", ".flac", ".ogg", ".oga", ".opus", ".mp3",
    ".m4a", ".aac", ".mp4", ".caf", ".w64", ".wma", ".alac",
})


class Filters(NamedTuple):
    folder: str | None = None  # only files under this folder
    min_duration_s: float | None = None
    max_duration_s: float | None = None
    label: str | None = None  # case-insensitive substring of the file's path
    exclude: tuple[str, ...] = ()  # paths never to return
    # These two need the mix's tempo and key: the engine turns them into excluded paths per query.
    max_stretch: float | None = None  # only stems whose stretch to the mix's tempo is within [1/x, x]
    key_compatible: bool = False  # leave out stems whose key clashes with the mix's

    def active(self) -> bool:
        return any(v not in (None, (), False) for v in self)

    def allowed_ids(self, records: Iterable[FileRecord]) -> list[int]:
        """Ids of the records these filters let through."""
        folder = None if self.folder is None else str(Path(self.folder).expanduser().absolute()).rstrip("/") + "/"
        label = None if self.label is None else self.label.lower()
        excluded = set(self.exclude)
        return [r.id for r in records
                if (folder is None or r.path.startswith(folder))
                and (self.min_duration_s is None or r.duration_s >= self.min_duration_s)
                and (self.max_duration_s is None or r.duration_s <= self.max_duration_s)
                and (label is None or label in r.path.lower())
                and r.path not in excluded]
