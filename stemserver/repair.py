"""`stemserver library verify` and `library repair`: what is damaged in a library folder, and
rebuilding it from what can still be read.

Everything in a library folder is derived from the user's audio: the database (which files, with
what), the embeddings and the index generations. Repair rewrites only these, in this order:

1. a database SQLite cannot read (or that holds no library) is rebuilt from the rows that can
   still be read, and from the file records the newest index generation keeps (`files.json`);
   the damaged file is kept beside it as `library.sqlite.damaged`;
2. files whose embedding is missing, unreadable or garbled are embedded again (their audio is
   read, never written), or forgotten when their audio is gone or the checkpoint differs;
3. the search index is rebuilt when anything changed or the live generation is damaged.

The audio files themselves are never opened for writing, moved or deleted.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import tempfile
import time
from dataclasses import fields
from pathlib import Path

from stemserver.config import Settings
from stemserver.files import sha256_file
from stemserver.index import RECORDS, IndexSettings, LibraryIndex, build_index, read_current
from stemserver.library import (
    DATABASE,
    SCHEMA,
    SCHEMA_VERSION,
    DamagedLibrary,
    FileRecord,
    Library,
    LibraryError,
    has_library_data,
)
from stemserver.music import MusicFacts

_FILE_COLUMNS = [f.name for f in fields(FileRecord) if f.name != "id"] + ["indexed_at"]
_TABLES = {"meta": ["key", "value"], "files": ["id", *_FILE_COLUMNS],
           "failures": ["path", "size", "mtime_ns", "error", "at"], "music": ["path", *MusicFacts._fields]}


def verify(root: Path) -> list[str]:
    """Every problem found in the library at `root`: database, embeddings, source files, index."""
    with Library(root) as library:
        return library.verify() + index_problems(library)


def index_problems(library: Library) -> list[str]:
    """What is wrong with the live index generation, checked to the last stored float."""
    try:
        if read_current(library.root / "index") is None:
            return [f"{library.root} has indexed files but no search index: run `stemserver library repair`"] \
                if library.files() else []
        return LibraryIndex(library).problems()
    except LibraryError as e:
        return [str(e)]


def repair(root: Path, checkpoint_path: Path, settings: Settings, progress: bool = True) -> list[str]:
    """Repair what `verify` finds in the library at `root`; returns what was done, one sentence each.
    `checkpoint_path` is the model that embeds damaged files again (it must be the library's)."""
    if not (root / DATABASE).is_file() and not has_library_data(root):
        raise LibraryError(f"no library at {root}: build one with `stemserver index FOLDER --library {root}`")
    done, damaged_db = [], not (root / DATABASE).is_file()
    try:
        if not damaged_db:
            with Library(root) as library:
                damaged_db = bool(library.integrity_problems())
    except DamagedLibrary:
        damaged_db = True
    if damaged_db:
        done.append(rebuild_database(root))
    with Library(root) as library:
        damaged = library.damaged_embeddings()
        if damaged:
            done.append(_embed_again(library, damaged, checkpoint_path, settings, progress))
        if done or index_problems(library):
            done.append(_rebuild_index(library, progress))
        if damaged_db and (analysed := library.add_missing_music(progress=progress)):
            done.append(f"added the tempo and key of {analysed} file(s) whose rows were lost")
    return done or [f"nothing to repair: {root} and its search index are sound"]


def rebuild_database(root: Path) -> str:
    """Write a new database from the rows of the damaged one that can be read and from the newest
    index generation's file records; keep the damaged one as `library.sqlite.damaged`."""
    database = root / DATABASE
    salvaged = _salvage(database)
    meta = {key: value for key, value in salvaged["meta"] if isinstance(key, str) and isinstance(value, str)}
    files = {row[1]: row for row in salvaged["files"] if _plausible(row[1:])}
    info, records = _newest_records(root / "index")
    if "checkpoint_sha256" not in meta and info.get("checkpoint_sha256"):
        meta.update(checkpoint_sha256=info["checkpoint_sha256"], checkpoint_name=info.get("checkpoint_name") or "?")
    from_index = [row for row in records if row[0] not in files and _plausible(row)]
    if "checkpoint_sha256" not in meta:  # no way to know which model made the embeddings: start afresh
        files, from_index = {}, []
        shutil.rmtree(root / "embeddings", ignore_errors=True)
    meta["schema_version"] = str(SCHEMA_VERSION)
    new = root / f".{DATABASE}.rebuilding"
    new.unlink(missing_ok=True)
    with sqlite3.connect(new) as db:
        db.executescript(SCHEMA)
        db.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
        db.executemany(f"INSERT OR IGNORE INTO files VALUES ({', '.join('?' * len(_TABLES['files']))})", files.values())
        db.executemany(f"INSERT INTO files ({', '.join(_FILE_COLUMNS)}) VALUES ({', '.join('?' * len(_FILE_COLUMNS))})",
                       from_index)
        db.executemany("INSERT OR IGNORE INTO failures VALUES (?, ?, ?, ?, ?)", salvaged["failures"])
        kept = set(files) | {row[0] for row in from_index}
        db.executemany(f"INSERT OR IGNORE INTO music VALUES ({', '.join('?' * len(_TABLES['music']))})",
                       [row for row in salvaged["music"] if row[0] in kept])
    db.close()
    for suffix in ("", "-wal", "-shm"):  # the WAL belongs to the damaged file: it moves with it
        if (root / f"{DATABASE}{suffix}").exists():
            os.replace(root / f"{DATABASE}{suffix}", root / f"{DATABASE}.damaged{suffix}")
    os.replace(new, database)
    if "checkpoint_sha256" not in meta:
        return (f"rebuilt {DATABASE} empty: nothing in it could be read and no index generation records its files "
                f"or model; index your folders again (the damaged file is kept as {DATABASE}.damaged)")
    source = f", {len(from_index)} from index generation {info.get('generation', '?')}" if info else ""
    return (f"rebuilt {DATABASE}: {len(files)} file record(s) read from the damaged database{source} "
            f"(the damaged file is kept as {DATABASE}.damaged)")


def _salvage(database: Path) -> dict[str, list[tuple]]:
    """The rows of each table that SQLite can still read, from a copy (the damaged file is kept as it is)."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / DATABASE
        for suffix in ("", "-wal"):
            if (database.parent / f"{DATABASE}{suffix}").is_file():
                shutil.copyfile(database.parent / f"{DATABASE}{suffix}", Path(tmp) / f"{DATABASE}{suffix}")
        try:
            db = sqlite3.connect(copy)
            try:
                return {table: _readable_rows(db, table, columns) for table, columns in _TABLES.items()}
            finally:
                db.close()
        except sqlite3.DatabaseError:
            return {table: [] for table in _TABLES}


def _readable_rows(db: sqlite3.Connection, table: str, columns: list[str]) -> list[tuple]:
    rows: dict[int, tuple] = {}
    select = f"SELECT rowid, {', '.join(columns)} FROM {table}"
    try:
        for rowid, *row in db.execute(select):
            rows[rowid] = tuple(row)
        return list(rows.values())
    except sqlite3.DatabaseError:
        pass
    try:  # a damaged page loses the rows it holds; ask for the others one by one
        top = db.execute(f"SELECT max(rowid) FROM {table}").fetchone()[0] or 0
    except sqlite3.DatabaseError:
        return list(rows.values())
    for rowid in range(1, top + 1):
        if rowid not in rows:
            try:
                found = db.execute(f"{select} WHERE rowid = ?", (rowid,)).fetchone()
            except sqlite3.DatabaseError:
                continue
            if found:
                rows[rowid] = tuple(found[1:])
    return list(rows.values())


def _plausible(row: tuple) -> bool:
    """A files row (without id) whose values have the types and forms stemserver writes."""
    path, size, mtime_ns, sha256, duration_s, rate, channels, columns, label, indexed_at = row
    return (isinstance(path, str) and os.path.isabs(path) and isinstance(sha256, str) and len(sha256) == 64
            and all(isinstance(v, int) and v >= 0 for v in (size, mtime_ns, rate, channels, columns))
            and isinstance(duration_s, float) and isinstance(label, str) and isinstance(indexed_at, float))


def _newest_records(index_root: Path) -> tuple[dict, list[tuple]]:
    """The info and file records (rows without id) of the newest generation that kept readable ones."""
    for folder in sorted(index_root.glob("gen-*"), key=lambda p: int(p.name[4:]) if p.name[4:].isdigit() else -1,
                         reverse=True):
        try:
            info = json.loads((folder / "info.json").read_text())
            records = [FileRecord(**record) for record in json.loads((folder / RECORDS).read_text())]
        except (OSError, ValueError, TypeError):
            continue
        now = time.time()
        return info, [(r.path, r.size, r.mtime_ns, r.sha256, float(r.duration_s), r.sample_rate, r.channels, r.columns,
                       r.label, now) for r in records]
    return {}, []


def _embed_again(library: Library, damaged: dict[str, str], checkpoint_path: Path, settings: Settings,
                 progress: bool) -> str:
    from stemserver.indexing import scan_into  # loads torch: only when something must be embedded

    built_with = library.meta("checkpoint_sha256")
    if built_with not in (None, sha256_file(checkpoint_path)):
        library.forget_embeddings(damaged)
        return (f"forgot {len(damaged)} file(s) whose embedding was damaged ({', '.join(damaged)}): the library was "
                f"built with checkpoint {library.meta('checkpoint_name')}, not {checkpoint_path.name}; run "
                "`stemserver library repair --checkpoint` with that one, or index their folders again with it")
    scan_into(library, [], checkpoint_path, settings, options=None, progress=progress, damaged=damaged)
    present = {record.path for record in library.files()}
    again, gone = [p for p in damaged if p in present], [p for p in damaged if p not in present]
    text = f"embedded {len(again)} file(s) again whose embedding was damaged"
    return text + (f"; forgot {len(gone)} whose audio is gone or unreadable: {', '.join(gone)}" if gone else "")


def _rebuild_index(library: Library, progress: bool) -> str:
    index_root = library.root / "index"
    if not library.files():
        (index_root / "current.json").unlink(missing_ok=True)
        return "the library holds no files: removed its search index; add folders with `stemserver index FOLDER`"
    info = build_index(library, _previous_settings(index_root), progress=progress)
    return (f"rebuilt the search index: generation {info['generation']}, {info['windows']} windows of "
            f"{info['files']} files")


def _previous_settings(index_root: Path) -> IndexSettings:
    """The settings the library's index was last built with (hop, trees, PCA), or the defaults."""
    try:
        info = read_current(index_root) or _newest_records(index_root)[0]
        return IndexSettings(**info["settings"])
    except (LibraryError, KeyError, TypeError):
        return IndexSettings()
