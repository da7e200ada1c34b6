"""The sample library on disk: which files were indexed, with what, and their embeddings.

    LIBRARY/library.sqlite        one row per indexed file (path, size, mtime, content hash,
                                  duration, format), files that failed, and facts about the
                                  library (the checkpoint it was built with)
    LIBRARY/embeddings/ab/<sha256>.npy
                                  each file's representation: float16 (columns, rows, d), one
                                  column per 160 ms, keyed by content so duplicates and moved
                                  files are never embedded twice
    LIBRARY/embeddings/ab/<sha256>.windows-h<H>.npy
                                  its search windows, each encoded alone, H columns apart: float16
                                  (windows, d); a file embedded before they existed, or indexed now
                                  at another hop, has none, and its windows are cut from the
                                  columns (stemserver.index)
    LIBRARY/embeddings/ab/<sha256>.instrument.npy
                                  what it sounds like, in the text embedding space: float16
                                  (text_dim,), from the model's instrument head (none without one)
    LIBRARY/index/...             the search index built from these (stemserver.index)

Each file's tempo, key and bar count (table `music`, by path: a name can state them) come from
its tags and name first, else from its audio (stemserver.tags, stemserver.estimate), with the
source of each value. A library made before they existed (format 1) is upgraded in place when
opened: the table is added, and the next scan (or `add_missing_music`, `stemserver library
upgrade`) fills it for files already indexed by decoding them again, without embedding them again.

A scan commits one file at a time (embedding written atomically first, then its row), so a scan
that is interrupted, or crashes, resumes where it stopped and never leaves a row without its
embedding. A re-scan embeds only new or changed files (size or mtime differ) and drops removed
ones.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from stemserver import audio
from stemserver.errors import LibraryError, StemserverError
from stemserver.estimate import file_facts
from stemserver.files import atomic_path, sha256_file
from stemserver.music import MusicFacts
from stemserver.selection import AUDIO_EXTENSIONS

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from stemserver.inference import StemEmbedding

SCHEMA_VERSION = 2
UPGRADABLE_VERSIONS = {"1"}  # format 1 lacks the music table, which SCHEMA adds
DATABASE = "library.sqlite"
_SYSTEM_NAMES = frozenset({"thumbs.db", "desktop.ini", "__macosx", "$recycle.bin", "system volume information"})

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY,
    path TEXT UNIQUE NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    duration_s REAL NOT NULL,
    sample_rate INTEGER NOT NULL,
    channels INTEGER NOT NULL,
    columns INTEGER NOT NULL,
    label TEXT NOT NULL,
    indexed_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS files_sha256 ON files (sha256);
CREATE TABLE IF NOT EXISTS failures (
    path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, error TEXT NOT NULL, at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS music (
    path TEXT PRIMARY KEY,
    tempo_bpm REAL, tempo_confidence REAL, tempo_source TEXT,
    key TEXT, key_confidence REAL, key_source TEXT,
    bars INTEGER
);
"""


class DamagedLibrary(LibraryError):
    """The library's database is unreadable or holds no library: `stemserver library repair` rebuilds it."""


class DamagedEmbeddings(LibraryError):
    """Embeddings found damaged while reading them: `damaged` maps each file's path to why."""

    def __init__(self, damaged: dict[str, str], root: Path):
        self.damaged = damaged
        path, why = next(iter(damaged.items()))
        more = f" (and {len(damaged) - 1} more)" if len(damaged) > 1 else ""
        super().__init__(f"{path}: {why}{more}. {repair_advice(root)}")


@dataclass(frozen=True)
class FileRecord:
    id: int
    path: str
    size: int
    mtime_ns: int
    sha256: str
    duration_s: float
    sample_rate: int
    channels: int
    columns: int
    label: str


@dataclass
class ScanReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    reused_embeddings: int = 0
    analysed: int = 0  # files indexed before tempo and key existed, analysed now (not embedded again)
    audio_seconds: float = 0.0
    elapsed_s: float = 0.0
    failed: list[dict] = field(default_factory=list)  # {"path", "error"}
    damaged: list[dict] = field(default_factory=list)  # {"path", "error"}: embeddings found damaged, embedded again

    def to_dict(self) -> dict:
        return asdict(self)

    def count_embedded_again(self, again: ScanReport) -> None:
        """Add a second scan that embedded again files this one counted unchanged (their audio was)."""
        self.damaged += again.damaged
        self.added += again.added
        self.unchanged -= again.added
        self.analysed += again.analysed
        self.audio_seconds += again.audio_seconds
        self.elapsed_s += again.elapsed_s


def embedding_path(root: Path, sha256: str) -> Path:
    return root / "embeddings" / sha256[:2] / f"{sha256}.npy"


def instrument_path(root: Path, sha256: str) -> Path:
    return root / "embeddings" / sha256[:2] / f"{sha256}.instrument.npy"


def windows_path(root: Path, sha256: str, hop_columns: int) -> Path:
    return root / "embeddings" / sha256[:2] / f"{sha256}.windows-h{hop_columns}.npy"


def load_columns(root: Path, record: FileRecord) -> np.ndarray:
    """A file's (columns, rows, d) float16 representation, memory-mapped."""
    try:
        return np.load(embedding_path(root, record.sha256), mmap_mode="r")
    except (OSError, ValueError) as e:
        raise damaged_embedding(root, record, f"missing or unreadable: {e}") from e


def damaged_embedding(root: Path, record: FileRecord, why: str) -> LibraryError:
    """The error for a file whose stored embedding cannot be used, and how to repair it."""
    return LibraryError(f"the embedding of {record.path} ({embedding_path(root, record.sha256)}) is damaged "
                        f"({why}). {repair_advice(root)}")


GARBLED = "its embedding holds NaN or infinite values (garbled on disk)"


def repair_advice(root: Path) -> str:
    return (f"Run `stemserver library repair --library {root}`: it rebuilds what it can from the library's "
            "own files and never touches your audio.")


def has_library_data(root: Path) -> bool:
    """True when the folder holds embeddings or a search index, i.e. files were indexed into it."""
    return (root / "index" / "current.json").exists() or next((root / "embeddings").rglob("*.npy"), None) is not None


def label_for(path: Path) -> str:
    """What a sample library says about a file without metadata: its folder's name ("Bass")."""
    return path.parent.name.lower()


def find_audio_files(roots: Iterable[Path], follow_symlinks: bool = False) -> Iterator[Path]:
    """Audio files under `roots`, recursively, sorted, skipping hidden and system files.

    A directory symlink is followed only when it resolves under one of the roots, unless
    `follow_symlinks`: `/proc/<pid>/cwd` or a link to `/` would otherwise walk the whole machine.
    Each folder is walked once, so a symlink loop is never followed round."""
    roots = [Path(root).expanduser().absolute() for root in roots]
    inside = [str(root.resolve()) for root in roots]
    seen_dirs: set[tuple[int, int]] = set()
    for root in roots:
        if root.is_file():
            if root.suffix.lower() in AUDIO_EXTENSIONS:
                yield root
            continue
        if not root.is_dir():
            raise LibraryError(f"{root}: no such folder or file to index")
        for folder, dirs, files in os.walk(root, followlinks=True):
            stat = os.stat(folder)
            if (stat.st_dev, stat.st_ino) in seen_dirs:
                dirs[:] = []
                continue
            seen_dirs.add((stat.st_dev, stat.st_ino))
            dirs[:] = sorted(d for d in dirs if not _hidden_or_system(d)
                             and (follow_symlinks or _stays_inside(Path(folder) / d, inside)))
            for name in sorted(files):
                if not _hidden_or_system(name) and Path(name).suffix.lower() in AUDIO_EXTENSIONS:
                    yield Path(folder) / name


def _hidden_or_system(name: str) -> bool:
    return name.startswith(".") or name.lower() in _SYSTEM_NAMES


def _stays_inside(folder: Path, roots: list[str]) -> bool:
    """True for a real folder, or a symlink that resolves under one of the (resolved) roots."""
    if not folder.is_symlink():
        return True
    target = os.path.realpath(folder)
    return any(target == root or target.startswith(root.rstrip(os.sep) + os.sep) for root in roots)


class Library:
    """One library folder. Thread-compatible, not thread-safe: a scan owns its Library."""

    def __init__(self, root: str | Path, create: bool = False):
        self.root = Path(root).expanduser()
        database = self.root / DATABASE
        if not database.exists() and not create and has_library_data(self.root):
            raise DamagedLibrary(f"{database} is missing, but the folder holds embeddings or a search index. "
                                 f"{repair_advice(self.root)}")
        if not database.exists() and not create:
            raise LibraryError(
                f"no library at {self.root}: build one with `stemserver index FOLDER --library {self.root}`"
            )
        size = database.stat().st_size if database.exists() else None
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "embeddings").mkdir(exist_ok=True)
        self.db = sqlite3.connect(database, timeout=30, isolation_level=None)
        try:
            # An existing file without the tables (0 bytes, truncated, another file) must not pass
            # for an empty library while embeddings or an index say files were indexed.
            if size is not None and not self._one("SELECT 1 FROM sqlite_master WHERE name = 'files'") \
                    and (not create or has_library_data(self.root)):
                raise DamagedLibrary(f"{database} holds no library ({size} bytes): it was damaged or replaced. "
                                     f"{repair_advice(self.root)}")
            self._sql("PRAGMA journal_mode=WAL")
            self._sql("PRAGMA synchronous=NORMAL")
            self.db.executescript(SCHEMA)
        except sqlite3.DatabaseError as e:
            self.db.close()
            raise self._database_error(e) from e
        except LibraryError:
            self.db.close()
            raise
        version = self.meta("schema_version")
        if version is None or version in UPGRADABLE_VERSIONS:
            self.set_meta("schema_version", str(SCHEMA_VERSION))
        elif version != str(SCHEMA_VERSION):
            raise LibraryError(f"{self.root} has library format {version}; this stemserver reads {SCHEMA_VERSION}")

    def close(self) -> None:
        self.db.close()

    def _sql(self, sql: str, params: tuple = ()) -> list[tuple]:
        """All rows of one statement; a damaged database is a LibraryError that says how to repair it."""
        try:
            return self.db.execute(sql, params).fetchall()
        except sqlite3.DatabaseError as e:
            raise self._database_error(e) from e

    def _one(self, sql: str, params: tuple = ()) -> tuple | None:
        rows = self._sql(sql, params)
        return rows[0] if rows else None

    def _database_error(self, error: sqlite3.DatabaseError) -> LibraryError:
        database = self.root / DATABASE
        if isinstance(error, sqlite3.OperationalError):  # locked, disk full, no permission: not damage
            return LibraryError(f"cannot use {database}: {error}")
        return DamagedLibrary(f"{database} is damaged ({error}). {repair_advice(self.root)}")

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- facts about the library ------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        row = self._one("SELECT value FROM meta WHERE key = ?", (key,))
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self._sql("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def check_model(self, fingerprint: str) -> None:
        """Refuse to mix embeddings of two models: the library is bound to the first checkpoint."""
        built_with = self.meta("checkpoint_sha256")
        if built_with is not None and built_with != fingerprint:
            raise LibraryError(
                f"the library at {self.root} was built with checkpoint {self.meta('checkpoint_name')} "
                f"(sha256 {built_with[:12]}...), not the one given (sha256 {fingerprint[:12]}...). "
                f"Index into a new library folder (--library), or remove {self.root} and re-index."
            )

    # -- files --------------------------------------------------------------------------------

    def files(self) -> list[FileRecord]:
        rows = self._sql(f"SELECT {', '.join(FileRecord.__dataclass_fields__)} FROM files ORDER BY id")
        return [FileRecord(*row) for row in rows]

    def music(self) -> dict[str, MusicFacts]:
        """Each analysed file's tempo, key and bars, by path (a file indexed before they existed has none
        until the next scan)."""
        columns = ", ".join(MusicFacts._fields)
        return {row[0]: MusicFacts(*row[1:]) for row in self._sql(f"SELECT path, {columns} FROM music")}

    def failures(self) -> list[dict]:
        rows = self._sql("SELECT path, error FROM failures ORDER BY path")
        return [{"path": path, "error": error} for path, error in rows]

    def embedding_path(self, sha256: str) -> Path:
        return embedding_path(self.root, sha256)

    def load_columns(self, record: FileRecord) -> np.ndarray:
        return load_columns(self.root, record)

    def load_instrument(self, record: FileRecord) -> np.ndarray | None:
        """The file's instrument vector, float32 (text_dim,), or None when it has none (a model
        without an instrument head, or unreadable: it then counts as no instrument)."""
        try:
            vector = np.load(instrument_path(self.root, record.sha256))
        except (OSError, ValueError):
            return None
        return vector.astype(np.float32) if vector.ndim == 1 and np.isfinite(vector).all() else None

    def load_windows(self, record: FileRecord, hop_columns: int, count: int) -> np.ndarray | None:
        """The file's `count` search windows encoded alone `hop_columns` apart, float32 (count, d),
        or None when it has none at that hop (embedded before they existed, or at another hop) or
        they are unreadable or of another count: the caller cuts them from the columns then."""
        try:
            windows = np.load(windows_path(self.root, record.sha256, hop_columns))
        except (OSError, ValueError):
            return None
        if windows.ndim != 2 or len(windows) != count or not np.isfinite(windows).all():
            return None
        return windows.astype(np.float32)

    def unknown(self, paths: Iterable[str | Path]) -> list[str]:
        """The paths this library holds neither as an indexed or unreadable file nor as a folder it was
        indexed from."""
        keys = [str(Path(path).expanduser().absolute()) for path in paths]
        kept = set(self._kept_folders())
        return [key for key in keys if key not in kept and not self._one(
            "SELECT 1 FROM files WHERE path = ? UNION SELECT 1 FROM failures WHERE path = ?", (key, key))]

    def remove(self, paths: Iterable[str | Path]) -> int:
        """Forget files (and their embeddings when no other file shares them), and folders the library was
        indexed from, with every file under them: a re-index no longer scans them (a folder deleted for
        good, which a re-index would otherwise report missing forever). Returns how many files."""
        keys = [str(Path(path).expanduser().absolute()) for path in paths]
        kept = self._kept_folders()
        folders = [Path(key) for key in keys if key in kept]
        if folders:
            inside = {folder for folder in kept if any(Path(folder) == f or f in Path(folder).parents for f in folders)}
            self.set_meta("folders", json.dumps(sorted(set(kept) - inside)))
            keys = [key for key in keys if key not in kept] + sorted(self._indexed_under(folders))
        removed = 0
        for key in keys:
            row = self._one("SELECT sha256 FROM files WHERE path = ?", (key,))
            self._sql("DELETE FROM failures WHERE path = ?", (key,))
            if row:
                self._sql("DELETE FROM files WHERE path = ?", (key,))
                self._sql("DELETE FROM music WHERE path = ?", (key,))
                self._drop_embedding_if_unused(row[0])
                removed += 1
        return removed

    def _drop_embedding_if_unused(self, sha256: str) -> None:
        if not self._one("SELECT 1 FROM files WHERE sha256 = ? LIMIT 1", (sha256,)):
            self._delete_embedding(sha256)

    def _delete_embedding(self, sha256: str) -> None:
        self.embedding_path(sha256).unlink(missing_ok=True)
        instrument_path(self.root, sha256).unlink(missing_ok=True)
        for windows in self.embedding_path(sha256).parent.glob(f"{sha256}.windows-h*.npy"):
            windows.unlink(missing_ok=True)

    def damaged_embeddings(self, thorough: bool = True) -> dict[str, str]:
        """Path -> why, for the files whose embedding is missing, unreadable, or not the shape its row
        and the library's other embeddings have; with `thorough`, also those garbled (not finite),
        which reading every value shows (build_index reads them all anyway, and checks them)."""
        damaged, patches = {}, {}
        for record in self.files():
            try:
                columns = self.load_columns(record)
            except LibraryError:
                damaged[record.path] = "its embedding is missing or unreadable"
                continue
            if columns.ndim != 3 or columns.shape[0] != record.columns:
                damaged[record.path] = f"its embedding has shape {columns.shape}, its record {record.columns} columns"
            elif thorough and not np.isfinite(columns).all():
                damaged[record.path] = GARBLED
            else:
                patches[record.path] = columns.shape[1:]
        if patches:  # the shape nearly every embedding has is the library's
            usual = Counter(patches.values()).most_common(1)[0][0]
            damaged.update({path: f"its embedding's columns are {shape}, not the library's {usual}"
                            for path, shape in patches.items() if shape != usual})
        return damaged

    def forget_embeddings(self, paths: Iterable[str]) -> None:
        """Forget these files and delete their (damaged) embeddings, so that a scan embeds them again."""
        for path in paths:
            row = self._one("SELECT sha256 FROM files WHERE path = ?", (path,))
            if row:
                self._sql("DELETE FROM files WHERE path = ?", (path,))
                self._delete_embedding(row[0])

    def integrity_problems(self) -> list[str]:
        """What SQLite's own check finds wrong in the database file (nothing when it is sound)."""
        return [f"{self.root / DATABASE} is damaged: {row[0]}" for row in self._sql("PRAGMA quick_check")
                if row[0] != "ok"]

    def verify(self) -> list[str]:
        """Problems found: a damaged database, embeddings missing, unreadable or garbled, source files
        gone or changed on disk."""
        problems = self.integrity_problems()
        for record in self.files():
            source = Path(record.path)
            if not source.is_file():
                problems.append(f"{record.path}: the file is gone (re-index to drop it)")
            elif source.stat().st_size != record.size or source.stat().st_mtime_ns != record.mtime_ns:
                problems.append(f"{record.path}: the file changed since it was indexed (re-index)")
        problems += [f"{path}: {why} (`stemserver library repair` embeds it again)"
                     for path, why in self.damaged_embeddings().items()]
        return problems

    # -- scanning -----------------------------------------------------------------------------

    def scan(
        self,
        roots: Iterable[str | Path],
        embed: Callable[[np.ndarray], np.ndarray],
        fingerprint: str,
        checkpoint_name: str,
        sample_rate: int = audio.SAMPLE_RATE,
        max_duration_s: float = audio.MAX_DURATION_S,
        progress: bool = True,
        follow_symlinks: bool = False,
        damaged: dict[str, str] | None = None,
        on_file: Callable[[int, int], None] | None = None,
    ) -> ScanReport:
        """Bring the library up to date with the audio files under `roots`.

        `embed` maps mono samples at `sample_rate` to a StemEmbedding (stemserver.inference),
        or to the (columns, rows, d) representation alone (its windows are then cut from it).
        Unreadable files are recorded (and reported) instead of stopping the scan; they are
        retried when they change. Files whose embedding is damaged are embedded again, wherever
        they are: those `damaged` names (found by reading them whole) and those whose header or
        shape is wrong. Directory symlinks are followed as `find_audio_files` says. The folders
        scanned are kept (`folders`): a re-index from a client scans them again. `on_file(done, total)`
        is called before the first file and after each one (a server reports it as progress).
        """
        self.check_model(fingerprint)
        self.set_meta("checkpoint_sha256", fingerprint)
        self.set_meta("checkpoint_name", checkpoint_name)
        roots = [Path(r).expanduser().absolute() for r in roots]
        self._keep_folders(roots)
        report, start = ScanReport(), time.perf_counter()
        damaged = {**self.damaged_embeddings(thorough=False), **(damaged or {})}
        self.forget_embeddings(damaged)
        report.damaged = [{"path": path, "error": why} for path, why in damaged.items()]
        on_disk = list(find_audio_files(roots, follow_symlinks))
        on_disk += sorted({Path(d["path"]) for d in report.damaged if Path(d["path"]).is_file()} - set(on_disk))
        report.removed = self.remove(self._indexed_under(roots) - {str(p) for p in on_disk})
        bar = tqdm(on_disk, desc="indexing", unit="file", disable=not progress or None, dynamic_ncols=True)
        if on_file is not None:
            on_file(0, len(on_disk))
        for done, path in enumerate(bar, 1):
            self._scan_one(path, embed, sample_rate, max_duration_s, report)
            if on_file is not None:
                on_file(done, len(on_disk))
            elapsed = time.perf_counter() - start
            bar.set_postfix_str(f"{report.audio_seconds / max(elapsed, 1e-9):.0f} audio-s/s")
        report.elapsed_s = time.perf_counter() - start
        report.failed = [f for f in self.failures() if any(f["path"].startswith(str(r)) for r in roots)]
        return report

    def folders(self) -> list[Path]:
        """The audio folders this library was built from (every folder a scan was given, less those inside
        another): what a re-index scans again."""
        kept = [Path(folder) for folder in self._kept_folders()]
        return [folder for folder in kept if not any(other in folder.parents for other in kept)]

    def _kept_folders(self) -> list[str]:
        return json.loads(self.meta("folders") or "[]")

    def _keep_folders(self, roots: list[Path]) -> None:
        kept = self._kept_folders()
        self.set_meta("folders", json.dumps(sorted(set(kept) | {str(r) for r in roots if r.is_dir()})))

    def _indexed_under(self, roots: list[Path]) -> set[str]:
        paths = {row[0] for row in self._sql("SELECT path FROM files UNION SELECT path FROM failures")}
        return {p for p in paths if any(p == str(r) or p.startswith(str(r) + os.sep) for r in roots)}

    def _scan_one(self, path: Path, embed, sample_rate: int, max_duration_s: float, report: ScanReport) -> None:
        key = str(path)
        try:
            stat = path.stat()
        except OSError as e:
            self._record_failure(key, 0, 0, f"cannot read: {e}")
            return
        known = self._one("SELECT size, mtime_ns FROM files WHERE path = ?", (key,))
        if known == (stat.st_size, stat.st_mtime_ns):
            report.unchanged += 1
            if not self._one("SELECT 1 FROM music WHERE path = ?", (key,)):
                self._analyse(path, sample_rate, max_duration_s, report)
            return
        failed = self._one("SELECT size, mtime_ns FROM failures WHERE path = ?", (key,))
        if failed == (stat.st_size, stat.st_mtime_ns):
            return  # still the same unreadable file: reported again, not retried
        try:
            sha256 = sha256_file(path)
            twin = self._one(
                "SELECT duration_s, sample_rate, channels, columns FROM files WHERE sha256 = ? LIMIT 1", (sha256,)
            )
            if twin and self.embedding_path(sha256).is_file():
                duration_s, rate, channels, columns = twin
                report.reused_embeddings += 1
                facts = self._facts(path, sample_rate, max_duration_s, duration_s)
            else:
                samples, info = audio.load(path, sample_rate, max_duration_s)
                facts = file_facts(path, samples, sample_rate, info.duration_s)
                embedded = embed(samples)
                whole = None if isinstance(embedded, np.ndarray) else embedded
                embedding = embedded if whole is None else whole.columns
                # stored, it would be found damaged and embedded again, forever
                extras_finite = whole is None or (np.isfinite(whole.windows).all() and (
                    whole.instrument is None or np.isfinite(whole.instrument).all()))
                if not (np.isfinite(embedding).all() and extras_finite):
                    raise LibraryError(f"{path}: the model's embedding of this file is not finite (NaN or infinite)")
                self._write_embedding(sha256, embedding, whole)
                duration_s, rate, channels, columns = info.duration_s, info.sample_rate, info.channels, len(embedding)
        except (StemserverError, OSError) as e:
            self._record_failure(key, stat.st_size, stat.st_mtime_ns, str(e))
            return
        except Exception as e:  # a bug met on one file must not stop the scan of thousands
            log.exception("indexing %r failed", key)
            # recorded with no size, so that every scan retries it: a newer stemserver may read it
            self._record_failure(key, -1, -1, f"stemserver could not index this file ({type(e).__name__}: {e}); "
                                 "it is retried at each scan. Please report it with the file.")
            return
        old = self._one("SELECT sha256 FROM files WHERE path = ?", (key,))
        self._sql("BEGIN")
        self._sql("DELETE FROM failures WHERE path = ?", (key,))
        self._sql(
            "INSERT INTO files (path, size, mtime_ns, sha256, duration_s, sample_rate, channels, columns, label,"
            " indexed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(path) DO UPDATE SET size=excluded.size,"
            " mtime_ns=excluded.mtime_ns, sha256=excluded.sha256, duration_s=excluded.duration_s,"
            " sample_rate=excluded.sample_rate, channels=excluded.channels, columns=excluded.columns,"
            " label=excluded.label, indexed_at=excluded.indexed_at",
            (key, stat.st_size, stat.st_mtime_ns, sha256, duration_s, rate, channels, columns, label_for(path),
             time.time()),
        )
        self._write_music(key, facts)
        self._sql("COMMIT")
        if old and old[0] != sha256:
            self._drop_embedding_if_unused(old[0])
        report.audio_seconds += duration_s
        if old:
            report.updated += 1
        else:
            report.added += 1

    def add_missing_music(self, sample_rate: int = audio.SAMPLE_RATE, max_duration_s: float = audio.MAX_DURATION_S,
                          progress: bool = True) -> int:
        """Analyse every file indexed before the music facts existed (the upgrade of a format-1
        library); returns how many. A scan does the same for the files under its folders."""
        missing = [Path(path) for path in self._without_music()]
        report = ScanReport()
        for path in tqdm(missing, desc="tempo and key", unit="file", disable=not progress or None):
            self._analyse(path, sample_rate, max_duration_s, report)
        return report.analysed

    def _without_music(self) -> list[str]:
        """The paths of the files that have no tempo, key and bars yet."""
        return [row[0] for row in self._sql("SELECT path FROM files WHERE path NOT IN (SELECT path FROM music) "
                                            "ORDER BY id")]

    def _facts(self, path: Path, sample_rate: int, max_duration_s: float, duration_s: float) -> MusicFacts:
        """The file's tempo, key and bars, decoding it only when its tags and name do not state both."""
        return file_facts(path, lambda: audio.load(path, sample_rate, max_duration_s)[0], sample_rate, duration_s)

    def _analyse(self, path: Path, sample_rate: int, max_duration_s: float, report: ScanReport) -> None:
        """Add the music facts of a file indexed before they existed (no embedding). A file that cannot
        be read now (an unmounted drive) keeps its embedding and is analysed when it can be."""
        row = self._one("SELECT duration_s FROM files WHERE path = ?", (str(path),))
        try:
            facts = self._facts(path, sample_rate, max_duration_s, row[0])
        except (StemserverError, OSError):
            return
        except Exception:  # a bug met on one file: it stays without facts (and is tried again), the rest go on
            log.exception("the tempo and key of %r could not be estimated", str(path))
            return
        self._write_music(str(path), facts)
        report.analysed += 1

    def _write_music(self, key: str, facts: MusicFacts) -> None:
        places = ", ".join("?" * (len(MusicFacts._fields) + 1))
        self._sql(f"INSERT OR REPLACE INTO music (path, {', '.join(MusicFacts._fields)}) VALUES ({places})",
                  (key, *facts))

    def _write_embedding(self, sha256: str, columns: np.ndarray, embedded: StemEmbedding | None) -> None:
        """The windows and instrument first: a crash before the columns leaves them without
        columns, which `damaged_embeddings` finds (the columns are missing) and the next scan
        embeds again."""
        if embedded is not None:
            with atomic_path(windows_path(self.root, sha256, embedded.hop_columns)) as tmp, open(tmp, "wb") as f:
                np.save(f, np.asarray(embedded.windows, dtype=np.float16))
            if embedded.instrument is not None:
                with atomic_path(instrument_path(self.root, sha256)) as tmp, open(tmp, "wb") as f:
                    np.save(f, np.asarray(embedded.instrument, dtype=np.float16))
        with atomic_path(self.embedding_path(sha256)) as tmp, open(tmp, "wb") as f:
            np.save(f, np.asarray(columns, dtype=np.float16))

    def _record_failure(self, key: str, size: int, mtime_ns: int, error: str) -> None:
        self._sql(
            "INSERT OR REPLACE INTO failures VALUES (?, ?, ?, ?, ?)", (key, size, mtime_ns, error, time.time())
        )

    def stats(self) -> dict:
        files = self.files()
        embedding_bytes = sum(
            p.stat().st_size for p in (self.root / "embeddings").rglob("*.npy")
        )
        return {
            "library": str(self.root),
            "files": len(files),
            "failed": len(self.failures()),
            "audio_hours": round(sum(f.duration_s for f in files) / 3600, 3),
            "checkpoint": self.meta("checkpoint_name"),
            "embedding_bytes": embedding_bytes,
            "without_tempo_and_key": len(self._without_music()),
        }
