"""The query window, in a module that imports nothing, so light clients and the CLI's parser share it."""

QUERY_SECONDS = 8.0
"""The last seconds of a mix a query encodes by default. It is also the training length and the
window audio is encoded in (long stems window by window, loops tiled to fill it)."""

WINDOW_COLUMNS = 50
"""The library's search window in 160 ms columns: QUERY_SECONDS at the front end's rate."""
HOP_COLUMNS = 25
"""The hop between a long file's search windows (4 s)."""


def window_starts(columns: int, window: int = WINDOW_COLUMNS, hop: int = HOP_COLUMNS) -> list[int]:
    """Start columns of the windows covering `columns`; the last window ends at the last column."""
    if columns <= window:
        return [0]
    starts = list(range(0, columns - window + 1, hop))
    if starts[-1] != columns - window:
        starts.append(columns - window)
    return starts
