"""`stemserver index`: bring a library up to date with audio folders and rebuild its search index.

The command, the first start of `serve` (which indexes the demo library) and `library repair`
(which embeds damaged files again) all embed through `scan_into`, so a library is always built
the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from stemserver.checkpoint import load_model
from stemserver.config import Settings
from stemserver.files import sha256_file
from stemserver.index import IndexSettings, build_index
from stemserver.inference import stem_embedder
from stemserver.library import DamagedEmbeddings, Library, ScanReport


@dataclass(frozen=True)
class IndexOptions:
    tile_loops: bool = False  # repeat files shorter than 8 s to fill the window before embedding
    hop_s: float = 4.0  # hop between the 8 s search windows of long files
    n_trees: int = 50
    pca_dim: int | None = None
    follow_symlinks: bool = False  # also follow directory symlinks that lead outside the given folders


TILE_LOOPS = "tile_loops"  # the library's meta key: whether its last `index` tiled short files


def tiled_loops(library: Library) -> bool:
    """Whether the library's last scan tiled short files (what a re-index and a repair do again)."""
    return library.meta(TILE_LOOPS) == "1"


def options_built_with(library: Library, info: dict, seconds_per_column: float) -> IndexOptions:
    """The options a library's index generation was built with (its info's settings, and whether the
    library's last scan tiled loops), to index the same way again."""
    built = info.get("settings", {})
    defaults = IndexOptions()
    return IndexOptions(tile_loops=tiled_loops(library),
                        hop_s=built.get("hop_columns", round(defaults.hop_s / seconds_per_column)) * seconds_per_column,
                        n_trees=built.get("n_trees", defaults.n_trees), pca_dim=built.get("pca_dim"))


def hop_in_columns(options: IndexOptions, seconds_per_column: float) -> int:
    return max(1, round(options.hop_s / seconds_per_column))


def scan_into(library: Library, paths: Sequence[Path], checkpoint_path: Path, settings: Settings,
              options: IndexOptions | None = IndexOptions(), progress: bool = True,
              damaged: dict[str, str] | None = None,
              on_file: Callable[[int, int], None] | None = None) -> tuple[ScanReport, float]:
    """Embed the new, changed and damaged files of `paths` (and the `damaged` ones, wherever they
    are) into the library with the checkpoint's model; returns the report and the seconds per column.
    The library records whether `options` tile loops; with `options` None (a repair), its files are
    embedded as its last scan did."""
    if options is None:
        options = IndexOptions(tile_loops=tiled_loops(library))
    library.set_meta(TILE_LOOPS, "1" if options.tile_loops else "0")
    checkpoint, model, device = load_model(checkpoint_path, settings)
    hop_columns = hop_in_columns(options, checkpoint.config.seconds_per_column)
    report = library.scan(paths, stem_embedder(model, device, options.tile_loops, hop_columns=hop_columns),
                          sha256_file(checkpoint_path),
                          checkpoint_path.name, checkpoint.config.front_end.sample_rate, settings.max_audio_seconds,
                          progress=progress, follow_symlinks=options.follow_symlinks, damaged=damaged,
                          on_file=on_file)
    return report, checkpoint.config.seconds_per_column


def index_folders(paths: Sequence[Path], library_dir: Path, checkpoint_path: Path, settings: Settings,
                  options: IndexOptions = IndexOptions(), progress: bool = True,
                  on_file: Callable[[int, int], None] | None = None) -> dict:
    """Scan `paths` into the library (embedding new, changed and damaged files, dropping removed
    ones) and build a new index generation; returns the scan report, the library folder and the
    index info (None when the library is empty). `on_file(done, total)` follows the scan."""
    with Library(library_dir, create=True) as library:
        report, seconds_per_column = scan_into(library, paths, checkpoint_path, settings, options, progress,
                                               on_file=on_file)
        index_settings = IndexSettings(hop_columns=hop_in_columns(options, seconds_per_column),
                                       n_trees=options.n_trees, pca_dim=options.pca_dim)
        try:
            info = build_index(library, index_settings, progress=progress) if library.files() else None
        except DamagedEmbeddings as e:  # garbled values show when read whole, as the build does: embed those again
            again, _ = scan_into(library, [], checkpoint_path, settings, options, progress, damaged=e.damaged)
            report.count_embedded_again(again)
            info = build_index(library, index_settings, progress=progress) if library.files() else None
    return {**report.to_dict(), "library": str(library_dir), "index": info}
