"""Check an Annoy index file before Annoy opens it.

Annoy memory-maps the file and trusts every offset in it: a truncated or overwritten file makes
the first search read outside the mapping, which kills the process (a segfault, no exception).
So the file is checked here, in numpy, against what Annoy 1.17 writes for the angular metric:

    one node per record, `4 * (3 + dim)` bytes: int32 n_descendants, int32 children[2], float32 v[dim]
    nodes [0, items)       the items (n_descendants 1, v the vector)
    nodes [items, end)     tree nodes: a leaf holds up to dim + 2 item ids in place of children + v;
                           a split node has two children, always written before it (lower index),
                           so the trees cannot loop
    the last nodes         copies of the roots, n_descendants == items
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

_HEADER_INTS = 3  # n_descendants, children[2]
_CHUNK = 1 << 16  # nodes checked at a time


def annoy_file_problem(path: Path, items: int, dim: int, thorough: bool = False) -> str | None:
    """Why Annoy must not open `path` (an index of `items` vectors of `dim` floats), or None.

    The structure (sizes, every node's children in range) is always checked; `thorough` also
    checks that every stored float is finite."""
    node_ints = _HEADER_INTS + dim
    try:
        size = path.stat().st_size
    except OSError as e:
        return f"cannot read {path.name}: {e}"
    if size == 0 or size % (4 * node_ints):
        return f"{path.name} is {size} bytes, not a whole number of {4 * node_ints}-byte nodes (truncated?)"
    nodes = size // (4 * node_ints)
    if nodes <= items:
        return f"{path.name} holds {nodes} nodes, fewer than its {items} items and their trees"
    with open(path, "rb") as f:
        f.seek(size - 4 * node_ints)
        if (last := int(np.fromfile(f, np.int32, 1)[0])) != items:
            return f"{path.name} ends with a node of {last} items, not a root of all {items}"
        f.seek(0)
        for start in range(0, nodes, _CHUNK):  # read in blocks: a large index is checked in bounded memory
            block = np.fromfile(f, np.int32, _CHUNK * node_ints).reshape(-1, node_ints)
            problem = _block_problem(block, start, items, thorough)
            if problem:
                return f"{path.name}: {problem}"
    return None


def _block_problem(block: np.ndarray, start: int, items: int, thorough: bool) -> str | None:
    """What is wrong with nodes [start, start + len(block)), or None."""
    index = np.arange(start, start + len(block))
    counts = block[:, 0]
    is_item = index < items
    if (counts[is_item] != 1).any():
        return f"item {int(index[is_item][np.argmax(counts[is_item] != 1)])} is not stored as an item"
    leaf_capacity = block.shape[1] - 1
    tree = ~is_item
    if ((counts[tree] < 1) | (counts[tree] > items)).any():
        return "a tree node claims an impossible number of items"
    split = tree & (counts > leaf_capacity)
    children = block[split, 1:3]
    if ((children < 0) | (children >= index[split, None])).any():
        return "a tree node points outside the file or to a later node"
    leaf = tree & ~split
    used = np.arange(leaf_capacity)[None, :] < counts[leaf, None]
    slots = block[leaf, 1:]
    if ((slots < 0) | (slots >= items))[used].any():
        return "a leaf points to an item that does not exist"
    if thorough and not np.isfinite(block[is_item | split, _HEADER_INTS:].view(np.float32)).all():
        return "it holds NaN or infinite vectors"
    return None
