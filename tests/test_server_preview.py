"""Previews through a running server: a real `stemserver serve` on loopback, real WebSocket and OSC
requests, real WAV files written into the library's previews folder and read back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile
from test_server import RATE, OscClient, library, server, write_mix, ws_query  # noqa: F401  (fixtures)

from stemserver.server.service import PREVIEWS_KEPT


@pytest.fixture
def osc(server):  # noqa: F811
    client = OscClient(server.osc)
    yield client
    client.close()


def library_stem(server, mix: Path) -> dict:  # noqa: F811  (a fixture's value, passed on)
    """The best match of line1.wav for `mix`, as a query returns it: how a client learns a stem's path."""
    reply = ws_query(server.ws, {"type": "query_file", "id": "q", "path": str(mix), "instrument": "bass", "k": 1,
                                 "filters": {"label": "line1"}})
    return reply["matches"][0]


def test_a_websocket_preview_lays_the_stem_in_at_its_offset(server, library: Path, tmp_path: Path):  # noqa: F811
    mix = write_mix(tmp_path / "mix.wav", seed=1, shift_s=4.8)  # line1.wav from 4.8 s: the stem itself
    stem = library_stem(server, tmp_path / "mix.wav")["path"]
    reply = ws_query(server.ws, {"type": "preview", "id": 7, "mix": str(tmp_path / "mix.wav"), "stem": stem,
                                 "offset": 4.8, "stretch": 1.0, "transpose": 0})
    assert reply["type"] == "preview" and reply["id"] == 7, reply
    path = Path(reply["path"])
    assert path.is_absolute() and path.parent == library.absolute() / "previews"
    rendered, rate = soundfile.read(path, dtype="float32")
    assert rate == RATE and rendered.shape == mix.shape and reply["duration_s"] == pytest.approx(8.0)
    # The stem at 4.8 s is the mix itself: the preview is the mix twice over, scaled to keep from clipping.
    scale = 10 ** (reply["gain_db"] / 20)
    np.testing.assert_allclose(rendered, 2 * mix * scale, atol=1e-4)


def test_an_osc_preview_stretches_and_transposes_into_a_readable_wav(server, osc, tmp_path: Path):  # noqa: F811
    mix = write_mix(tmp_path / "mix.wav", seed=1, shift_s=2.0)
    match = library_stem(server, tmp_path / "mix.wav")
    osc.send("/stemserver/preview", "p1", str(tmp_path / "mix.wav"), match["path"], match["offset_s"], 1.2, -2,
             "stem_gain_db", -6.0)
    ((address, args),) = osc.until("p1", last="/stemserver/preview/done")
    assert address == "/stemserver/preview/done", args
    _, path, duration_s = args
    rendered, rate = soundfile.read(path, dtype="float32")
    assert rate == RATE and rendered.shape == mix.shape and duration_s == pytest.approx(8.0)
    assert np.abs(rendered - mix).max() > 0.01  # the stem is in it


def test_a_stem_outside_the_library_is_refused_on_both_wires(server, osc, library: Path,  # noqa: F811
                                                              tmp_path: Path):
    write_mix(tmp_path / "mix.wav", seed=0, shift_s=0.0)
    before = sorted((library / "previews").glob("*"))
    outside = str(tmp_path / "mix.wav")  # a real audio file, but not one the library holds
    reply = ws_query(server.ws, {"type": "preview", "id": "x", "mix": outside, "stem": outside})
    assert (reply["type"], reply["id"], reply["code"]) == ("error", "x", "not_in_library")
    assert outside in reply["message"] and "a query returned" in reply["message"]
    osc.send("/stemserver/preview", "y", outside, outside, 0.0, 1.0, 0)
    ((address, args),) = osc.until("y")
    assert address == "/stemserver/error" and args[1] == "not_in_library"
    assert sorted((library / "previews").glob("*")) == before  # nothing rendered


@pytest.mark.parametrize("fields, code, says", [
    ({"stretch": 9.0}, "bad_request", "from 0.25 to 4"),
    ({"transpose": 2.5}, "bad_request", "whole semitones"),
    ({"offset": "soon"}, "bad_request", "finite number"),
    ({"seconds": 60}, "bad_request", "from 2 to 30"),
    ({"mix": "mix.wav"}, "bad_file", "absolute path"),
    ({"offset": 25.0}, "bad_request", "beyond the stem's end"),
])
def test_bad_preview_values_get_typed_errors_with_the_request_id(server, tmp_path: Path,  # noqa: F811
                                                                 fields, code, says):
    write_mix(tmp_path / "mix.wav", seed=3, shift_s=1.0)
    stem = library_stem(server, tmp_path / "mix.wav")["path"]
    reply = ws_query(server.ws, {"type": "preview", "id": "bad", "mix": str(tmp_path / "mix.wav"), "stem": stem,
                                 **fields})
    assert (reply["type"], reply["id"], reply["code"]) == ("error", "bad", code), reply
    assert says in reply["message"]


@pytest.mark.slow
def test_the_server_keeps_only_the_newest_previews(server, library: Path, tmp_path: Path):  # noqa: F811
    write_mix(tmp_path / "mix.wav", seed=1, shift_s=4.8)
    stem = library_stem(server, tmp_path / "mix.wav")["path"]
    paths = [ws_query(server.ws, {"type": "preview", "id": i, "mix": str(tmp_path / "mix.wav"), "stem": stem,
                                  "offset": 4.8})["path"] for i in range(PREVIEWS_KEPT + 3)]
    kept = sorted(p.name for p in (library / "previews").glob("preview-*.wav"))
    assert len(kept) == PREVIEWS_KEPT and Path(paths[-1]).name in kept and Path(paths[0]).name not in kept
