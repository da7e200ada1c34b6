"""The query window, in a module that imports nothing, so light clients and the CLI's parser share it."""

QUERY_SECONDS = 8.0
"""The last seconds of a mix a query encodes by default. It is also the training length and the
window audio is encoded in (long stems window by window, loops tiled to fill it)."""
