"""Reading a candidate's stored embedding for the offset search (stemserver/columns.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from stemserver.columns import read_columns
from stemserver.library import FileRecord, LibraryError, embedding_path

SHA = "ab" + "0" * 62


def stored(root: Path, columns: np.ndarray, version: tuple[int, int] | None = (1, 0)) -> FileRecord:
    path = embedding_path(root, SHA)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        np.lib.format.write_array(f, columns, version=version)
    return FileRecord(1, "/music/bass.wav", 1, 1, SHA, 1.0, 16_000, 1, len(columns), "bass")


def test_the_columns_read_are_the_stored_values_in_float32(tmp_path: Path):
    columns = np.random.default_rng(0).standard_normal((7, 5, 12)).astype(np.float16)
    rows = read_columns(tmp_path, stored(tmp_path, columns), (5, 12))
    assert rows.dtype == torch.float32 and torch.equal(rows, torch.from_numpy(columns.reshape(7, 60)).float())


def test_a_header_written_otherwise_is_parsed(tmp_path: Path):
    columns = np.random.default_rng(1).standard_normal((7, 5, 12)).astype(np.float16)
    record = stored(tmp_path, columns, version=(2, 0))  # not the bytes np.save writes: the slow path
    assert torch.equal(read_columns(tmp_path, record, (5, 12)), torch.from_numpy(columns.reshape(7, 60)).float())


@pytest.mark.parametrize("columns, message", [
    (np.zeros((7, 5, 10), np.float16), r"float16 \(7, 5, 10\), not the float16 \(7, 5, 12\)"),
    (np.zeros((7, 5, 12), np.float32), "float32"),
    (np.asfortranarray(np.zeros((7, 5, 12), np.float16)), "Fortran-ordered float16"),
])
def test_an_embedding_of_another_shape_or_type_is_refused(tmp_path: Path, columns, message):
    record = stored(tmp_path, columns)
    with pytest.raises(LibraryError, match=f"(?s)/music/bass.wav.*{message}.*library repair"):
        read_columns(tmp_path, record, (5, 12))


def test_a_truncated_or_missing_embedding_is_refused(tmp_path: Path):
    record = stored(tmp_path, np.zeros((7, 5, 12), np.float16))
    path = embedding_path(tmp_path, SHA)
    path.write_bytes(path.read_bytes()[:-2])
    with pytest.raises(LibraryError, match="truncated"):
        read_columns(tmp_path, record, (5, 12))
    path.unlink()
    with pytest.raises(LibraryError, match="No such file"):
        read_columns(tmp_path, record, (5, 12))
