"""Tempo and key as a file states them: its tags and chunks, then its name.

Sample packs say what a loop is: a WAV's `acid` chunk (Acidized loops: tempo, beats, meter), ID3
frames (TBPM, TKEY: in MP3s, and in `id3 ` chunks of WAV and AIFF files), MP4 atoms (`tmpo`, the
iTunes `initialkey`), FLAC's Vorbis comments (BPM, KEY, INITIALKEY), and the name
(`Bass_124_Fmin_03.wav`, `pad 90bpm A minor.wav`). These are read here with the standard library
(no tag library is needed for four fields) and only where plausible: a tempo from 40 to 250 BPM
(60 to 200 for a bare number in a name), a key that parses. Estimating from the audio is the
fallback (stemserver.estimate); `stated_facts` says which source each value came from.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

from stemserver.music import Key, MusicFacts, key_name, parse_key

MIN_STATED_BPM, MAX_STATED_BPM = 40.0, 250.0
MIN_NAMED_BPM, MAX_NAMED_BPM = 60.0, 200.0  # a bare number in a name is a tempo only in this range
MAX_TAG_BYTES = 1 << 20  # a tag block larger than this is not one we read (artwork lives there)
_SEPARATORS = r"[\s_\-.,()\[\]]"
_NAMED_BPM = re.compile(rf"(?:^|{_SEPARATORS})(\d{{2,3}}(?:\.\d+)?)\s*bpm(?=$|{_SEPARATORS})", re.IGNORECASE)
_BARE_NUMBER = re.compile(rf"(?:^|{_SEPARATORS})(\d{{2,3}})(?=$|{_SEPARATORS})")
_NAMED_KEY = re.compile(
    rf"(?:^|{_SEPARATORS})([A-G][#b♯♭]?)\s*(major|minor|maj|min|m|dorian|phrygian|lydian|mixolydian|aeolian"
    rf"|locrian|ionian)(?=$|{_SEPARATORS}|\d)", re.IGNORECASE)
_KEY_TOKEN = re.compile(r"[A-G][#b♯♭]?")


def stated_facts(path: str | Path) -> MusicFacts:
    """The tempo, key and bars `path` states (tags first, then its name); None where it states nothing."""
    path = Path(path)
    tempo = key = bars = None
    tempo_source = key_source = None
    try:
        for source, found in _tags(path):
            if tempo is None and _plausible(found.get("bpm")):
                tempo, tempo_source, bars = float(found["bpm"]), source, found.get("bars")
            if key is None and found.get("key") is not None:
                key, key_source = found["key"], source
    except (OSError, struct.error, ValueError, UnicodeDecodeError):
        pass  # a damaged tag states nothing; the audio still can
    named_tempo, named_key = facts_from_name(path.stem)
    if tempo is None and named_tempo is not None:
        tempo, tempo_source = named_tempo, "name"
    if key is None and named_key is not None:
        key, key_source = named_key, "name"
    return MusicFacts(tempo_bpm=tempo, tempo_confidence=1.0 if tempo else None, tempo_source=tempo_source,
                      key=key_name(key) if key else None, key_confidence=1.0 if key else None,
                      key_source=key_source, bars=bars)


def facts_from_name(name: str) -> tuple[float | None, Key | None]:
    """The tempo and key a sample-pack name states: "124bpm", "_124_", "Fmin", "F#m", "A minor"; a
    tonic alone ("Keys_120_C_01") only right beside the tempo, where packs put it."""
    tempo = None
    match = _NAMED_BPM.search(name)
    if match and _plausible(float(match.group(1))):
        tempo = float(match.group(1))
    bare = None
    if tempo is None:
        numbers = [m for m in _BARE_NUMBER.finditer(name) if MIN_NAMED_BPM <= int(m.group(1)) <= MAX_NAMED_BPM]
        if len(numbers) == 1:  # two candidates ("Loop_120_140") say nothing reliable
            tempo, bare = float(numbers[0].group(1)), numbers[0]
    key = None
    named = _NAMED_KEY.search(name)
    if named:
        key = parse_key(f"{named.group(1)} {named.group(2)}")
    elif bare is not None:
        after = re.match(rf"{_SEPARATORS}+([A-G][#b]?)(?=$|{_SEPARATORS})", name[bare.end():])
        if after and _KEY_TOKEN.fullmatch(after.group(1)):
            key = parse_key(after.group(1), bare_tonic=True)
    return tempo, key


def _plausible(bpm) -> bool:
    return isinstance(bpm, (int, float)) and MIN_STATED_BPM <= bpm <= MAX_STATED_BPM


def _tags(path: Path):
    """(source, {"bpm", "key", "bars"}) for every tag block found in the file."""
    with open(path, "rb") as f:
        head = f.read(12)
        f.seek(0)
        if head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE":
            yield from _riff(f, "<", 12)
        elif head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
            yield from _riff(f, ">", 12)
        elif head[:3] == b"ID3":
            yield "id3", _id3(f.read(MAX_TAG_BYTES))
        elif head[:4] == b"fLaC":
            yield "vorbis", _flac(f)
        elif head[4:8] == b"ftyp":
            yield "mp4", _mp4(f)


def _riff(f, endian: str, start: int):
    """The acid and id3 chunks of a WAV (little-endian sizes) or AIFF (big-endian) file."""
    f.seek(0, 2)
    end = f.tell()
    position = start
    while position + 8 <= end:
        f.seek(position)
        chunk_id, size = struct.unpack(f"{endian}4sI", f.read(8))
        if chunk_id == b"acid" and size >= 24:
            yield "acid", _acid(f.read(24))
        elif chunk_id in (b"id3 ", b"ID3 ") and size <= MAX_TAG_BYTES:
            yield "id3", _id3(f.read(size))
        position += 8 + size + (size & 1)


def _acid(data: bytes) -> dict:
    """Acid chunk: flags, root note, two unknowns, beats, meter denominator, numerator, tempo. A
    one-shot (flag 1) has no tempo; the root note carries no mode, so no key."""
    flags, _root, _, _, beats, _denominator, numerator, tempo = struct.unpack("<IHHfIHHf", data)
    if flags & 1 or not tempo:
        return {}
    bars = beats // numerator if numerator and beats and beats % numerator == 0 else None
    return {"bpm": round(tempo, 3), "bars": bars}


def _id3(data: bytes) -> dict:
    """TBPM and TKEY of an ID3v2.3/2.4 tag."""
    if data[:3] != b"ID3" or len(data) < 10:
        return {}
    version, flags = data[3], data[5]
    size = _syncsafe(data[6:10])
    position, end, found = 10, min(10 + size, len(data)), {}
    if flags & 0x40:  # an extended header comes first
        position += _syncsafe(data[10:14]) if version == 4 else 4 + struct.unpack(">I", data[10:14])[0]
    while position + 10 <= end and data[position] != 0:
        frame, raw = data[position:position + 4], data[position + 4:position + 8]
        length = _syncsafe(raw) if version == 4 else struct.unpack(">I", raw)[0]
        body = data[position + 10:position + 10 + length]
        if frame in (b"TBPM", b"TKEY") and body:
            text = _id3_text(body)
            found.update(_fields({"bpm" if frame == b"TBPM" else "key": text}))
        position += 10 + length
    return found


def _syncsafe(raw: bytes) -> int:
    return (raw[0] << 21) | (raw[1] << 14) | (raw[2] << 7) | raw[3]


def _id3_text(body: bytes) -> str:
    encoding, text = body[0], body[1:]
    codec = {0: "latin-1", 1: "utf-16", 2: "utf-16-be", 3: "utf-8"}.get(encoding, "latin-1")
    return text.decode(codec, errors="replace").split("\0")[0].strip()


def _fields(raw: dict) -> dict:
    """{"bpm": "124", "key": "F#m"} as found in tags -> numbers and Keys, dropping what does not parse."""
    found = {}
    try:
        bpm = float(str(raw.get("bpm", "")).replace(",", ".")) if raw.get("bpm") else None
    except ValueError:
        bpm = None
    if bpm:
        found["bpm"] = bpm
    key = parse_key(raw["key"], bare_tonic=True) if raw.get("key") else None
    if key:
        found["key"] = key
    return found


def _vorbis_comments(data: bytes) -> dict:
    """BPM / TEMPO and KEY / INITIALKEY of a FLAC's Vorbis comment block (vendor string, then the comments)."""
    (vendor,) = struct.unpack_from("<I", data, 0)
    position = 4 + vendor
    (count,) = struct.unpack_from("<I", data, position)
    position += 4
    raw = {}
    for _ in range(min(count, 1000)):
        (length,) = struct.unpack_from("<I", data, position)
        name, _, value = data[position + 4:position + 4 + length].decode("utf-8", errors="replace").partition("=")
        position += 4 + length
        name = name.upper()
        if name in ("BPM", "TEMPO", "TBPM"):
            raw.setdefault("bpm", value)
        elif name in ("KEY", "INITIALKEY", "TKEY"):
            raw.setdefault("key", value)
    return _fields(raw)


def _flac(f) -> dict:
    f.seek(4)
    while True:
        header = f.read(4)
        if len(header) < 4:
            return {}
        last, kind, size = header[0] & 0x80, header[0] & 0x7F, int.from_bytes(header[1:4], "big")
        if kind == 4:
            return _vorbis_comments(f.read(min(size, MAX_TAG_BYTES)))
        if last:
            return {}
        f.seek(size, 1)


def _mp4(f) -> dict:
    """`tmpo` and the iTunes `initialkey` from moov/udta/meta/ilst."""
    f.seek(0, 2)
    found: dict = {}
    _mp4_atoms(f, 0, f.tell(), found, depth=0)
    return _fields(found)


_MP4_CONTAINERS = {b"moov", b"udta", b"meta", b"ilst"}


def _mp4_atoms(f, start: int, end: int, found: dict, depth: int) -> None:
    position = start
    while position + 8 <= end and depth < 6:
        f.seek(position)
        size, kind = struct.unpack(">I4s", f.read(8))
        header = 8
        if size == 1:
            size, header = struct.unpack(">Q", f.read(8))[0], 16
        elif size == 0:
            size = end - position
        if size < header:
            return
        if kind in _MP4_CONTAINERS:
            skip = 4 if kind == b"meta" else 0  # meta is a full box: version and flags first
            _mp4_atoms(f, position + header + skip, position + size, found, depth + 1)
        elif kind == b"tmpo" and size <= 64:
            value = _mp4_data(f.read(size - header))
            if value and len(value) >= 2:
                found["bpm"] = str(int.from_bytes(value[:2], "big"))
        elif kind == b"----" and size <= 4096:
            body = f.read(size - header)
            if b"initialkey" in body.lower():
                value = _mp4_data(body[body.find(b"data") - 4:])
                if value:
                    found["key"] = value.decode("utf-8", errors="replace").strip()
        position += size


def _mp4_data(body: bytes) -> bytes | None:
    """The payload of the `data` atom at the start of `body` (size, 'data', type, locale, payload)."""
    if len(body) < 16 or body[4:8] != b"data":
        return None
    size = struct.unpack(">I", body[:4])[0]
    return body[16:size]
