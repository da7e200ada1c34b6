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
    nodes = np.memmap(path, dtype=np.int32, mode="r").reshape(-1, node_ints)
    if len(nodes) <= items:
        return f"{path.name} holds {len(nodes)} nodes, fewer than its {items} items and their trees"
    descendants = np.asarray(nodes[:, 0])
    if descendants[-1] != items:
        return f"{path.name} ends with a node of {descendants[-1]} items, not a root of all {items}"
    if (descendants[:items] != 1).any():
        return f"{path.name}: item {int(np.argmax(descendants[:items] != 1))} is not stored as an item"
    tree = np.arange(items, len(nodes))
    counts = descendants[items:]
    if ((counts < 1) | (counts > items)).any():
        return f"{path.name}: a tree node claims an impossible number of items"
    leaf_capacity = node_ints - 1
    leaves, splits = tree[counts <= leaf_capacity], tree[counts > leaf_capacity]
    children = np.asarray(nodes[splits, 1:3])
    if ((children < 0) | (children >= splits[:, None])).any():
        return f"{path.name}: a tree node points outside the file or to a later node"
    slots = np.asarray(nodes[leaves, 1:])
    used = np.arange(leaf_capacity)[None, :] < descendants[leaves][:, None]
    if ((slots < 0) | (slots >= items))[used].any():
        return f"{path.name}: a leaf points to an item that does not exist"
    if thorough:
        floats = nodes.view(np.float32)
        if not (np.isfinite(floats[:items, _HEADER_INTS:]).all() and np.isfinite(floats[splits, _HEADER_INTS:]).all()):
            return f"{path.name} holds NaN or infinite vectors"
    return None
