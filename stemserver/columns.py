"""The columns of the stems a query is aligned with, and what centring them takes.

`read_columns` reads a candidate's float16 embedding straight into one buffer and converts it to
float32: a memory map per file (np.load) costs a mapping, page faults and a copy more (1.9 ms
against 0.95 ms for ten 30 s stems of the default model). `ColumnCache` keeps the float32
columns of the stems recently returned, since successive queries on one song return many of the
same stems.

`StoredCentring` is what an index generation keeps of each embedding for
`alignment.align_rows`: its mean column and its centred columns' norms, computed at build time
by `alignment.stem_centring` from the same float32 values, so a query does not centre the stems
itself. A generation built before these files existed has none; the centring is then computed at
query time, to the same numbers.

    LIBRARY/index/gen-N/centring.npy        one row per embedding: sha256, first norm, columns
    LIBRARY/index/gen-N/centring-means.npy  (embeddings, D) float32 mean columns
    LIBRARY/index/gen-N/centring-norms.npy  (their columns in all,) float32 norms
"""

from __future__ import annotations

import functools
import io
import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from stemserver.alignment import Centring, stem_centring
from stemserver.library import FileRecord, damaged_embedding, embedding_path

TABLE, MEANS, NORMS = "centring.npy", "centring-means.npy", "centring-norms.npy"
TABLE_DTYPE = np.dtype([("sha256", "S64"), ("start", "<i8"), ("columns", "<i8")])


def read_columns(root: Path, record: FileRecord, patch: tuple[int, ...]) -> torch.Tensor:
    """A record's embedding, float16 (columns, *patch) on disk, as float32 (columns, prod(patch))
    rows, read straight into one buffer. The header is compared with the one np.save writes for
    that shape, and parsed only when it differs (parsing costs 50-90 us a file)."""
    shape = (record.columns, *patch)
    buffer = np.empty((record.columns, math.prod(patch)), np.float16)
    try:
        with open(embedding_path(root, record.sha256), "rb", buffering=0) as f:
            expected = _npy_header(shape)
            if f.read(len(expected)) != expected:
                f.seek(0)
                _check_header(f, shape)
            if f.readinto(memoryview(buffer).cast("B")) != buffer.nbytes:
                raise ValueError("it is truncated")
    except (OSError, ValueError) as e:
        raise damaged_embedding(root, record, str(e)) from e
    return torch.from_numpy(buffer).float()


@functools.lru_cache(maxsize=64)
def _npy_header(shape: tuple[int, ...]) -> bytes:
    """The .npy header np.save writes for a float16 array of `shape`."""
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, {"descr": "<f2", "fortran_order": False, "shape": shape})
    return out.getvalue()


def _check_header(f: BinaryIO, shape: tuple[int, ...]) -> None:
    version = np.lib.format.read_magic(f)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    found, fortran, dtype = read(f)
    if fortran or dtype != np.float16 or tuple(found) != shape:
        raise ValueError(f"it holds {'Fortran-ordered ' if fortran else ''}{dtype} {found}, "
                         f"not the float16 {shape} the library has")


class ColumnCache:
    """The float32 columns and centring of recently aligned embeddings, least recently used out
    first, at most `max_bytes` of columns; thread-safe. Embeddings are named by their content's
    hash, so an entry is never stale."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = self.misses = 0
        self._entries: OrderedDict[str, tuple[torch.Tensor, Centring]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, sha256: str) -> tuple[torch.Tensor, Centring] | None:
        with self._lock:
            entry = self._entries.get(sha256)
            if entry is None:
                self.misses += 1
                return None
            self.hits += 1
            self._entries.move_to_end(sha256)
            return entry

    def put(self, sha256: str, rows: torch.Tensor, centring: Centring) -> None:
        size = rows.nbytes
        with self._lock:
            if size > self.max_bytes or sha256 in self._entries:
                return
            self._entries[sha256] = (rows, centring)
            self.bytes += size
            while self.bytes > self.max_bytes:
                self.bytes -= self._entries.popitem(last=False)[1][0].nbytes

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.bytes = 0


class StoredCentring:
    """A generation's stored centring, memory-mapped; `get` answers None for an embedding it lacks."""

    def __init__(self, folder: Path):
        self.table = np.load(folder / TABLE)
        self.means = np.load(folder / MEANS, mmap_mode="r")
        self.norms = np.load(folder / NORMS, mmap_mode="r")
        self.rows = {sha.decode(): i for i, sha in enumerate(self.table["sha256"].tolist())}

    @classmethod
    def load(cls, folder: Path) -> StoredCentring | None:
        """The generation's centring, or None when it was built without (before it existed)."""
        return cls(folder) if (folder / TABLE).is_file() else None

    def get(self, record: FileRecord) -> Centring | None:
        row = self.rows.get(record.sha256)
        if row is None or int(self.table["columns"][row]) != record.columns:
            return None
        start = int(self.table["start"][row])
        return Centring(torch.from_numpy(np.array(self.means[row])),
                        torch.from_numpy(np.array(self.norms[start : start + record.columns])))

    def problem(self, thorough: bool) -> str | None:
        """What is inconsistent in the stored centring, or None; `thorough` reads every value."""
        table = self.table
        if table.dtype != TABLE_DTYPE or self.means.ndim != 2 or self.means.shape[0] != len(table) \
                or self.norms.shape != (int(table["columns"].sum()),) \
                or not np.array_equal(table["start"], np.cumsum(table["columns"]) - table["columns"]):
            return (f"the stored centring does not fit together ({TABLE} {table.shape} {table.dtype}, "
                    f"{MEANS} {self.means.shape}, {NORMS} {self.norms.shape})")
        if thorough and not (np.isfinite(self.means).all() and (np.asarray(self.norms) > 0).all()):
            return f"{MEANS} or {NORMS} holds NaN, infinite or non-positive values"  # a norm may be +inf
        return None


class CentringWriter:
    """Writes a generation's centring while `build_index` reads each embedding once."""

    def __init__(self, folder: Path, records: Sequence[FileRecord], width: int):
        columns = {record.sha256: record.columns for record in records}  # one row per embedding
        self.folder = folder
        self.table = np.zeros(len(columns), TABLE_DTYPE)
        self.table["sha256"] = list(columns)
        self.table["columns"] = list(columns.values())
        self.table["start"] = np.cumsum(self.table["columns"]) - self.table["columns"]
        self.rows = {sha: i for i, sha in enumerate(columns)}
        self.written: set[int] = set()
        self.means = np.lib.format.open_memmap(folder / MEANS, "w+", np.float32, (len(columns), width))
        self.norms = np.lib.format.open_memmap(folder / NORMS, "w+", np.float32, (int(self.table["columns"].sum()),))

    def add(self, record: FileRecord, columns: np.ndarray) -> None:
        row = self.rows[record.sha256]
        if row in self.written:
            return
        rows = torch.from_numpy(np.asarray(columns, np.float32).reshape(len(columns), -1))
        centring = stem_centring(rows)
        start = int(self.table["start"][row])
        self.means[row] = centring.mean.numpy()
        self.norms[start : start + len(columns)] = centring.norms.numpy()
        self.written.add(row)

    def close(self) -> None:
        """Flush the values, then write the table: a generation without it has no centring."""
        self.means.flush()
        self.norms.flush()
        del self.means, self.norms
        np.save(self.folder / TABLE, self.table)
