// stemserver_stream.js: the audio side of the stemserver patch (classic Max [js], ES5 only).
//
//   [js stemserver_stream.js RING SNAPSHOT]
//
// RING is the circular buffer~ that record~ fills continuously (loop 1); SNAPSHOT is a buffer~ of
// the same size and channel count. A circular buffer holds the last seconds out of time order: the
// oldest sample sits just after the write head. This helper "unrolls" it (oldest first) for the
// two ways the patch sends audio to the server:
//
//   snapshot PATH                  copy the ring, unrolled, into SNAPSHOT and ask that buffer~ to
//                                  writewave PATH; then (once the write has had time to happen)
//                                  report "written PATH frames rate channels" to the client.
//   stream ID INSTRUMENT K [TOKEN] [KEY VALUE]...
//                                  send the ring, unrolled, as a streamed upload (docs/protocol.md):
//                                  /stemserver/stream/begin (with the query's KEY VALUE pairs, e.g.
//                                  tempo 124, after k), /stemserver/stream/floats (Max cannot put
//                                  blobs in OSC messages) and /stemserver/stream/end; then report
//                                  "streamed ID COUNT" to the client. Pairs come two by two, so an
//                                  odd number of words after K starts with the token.
//   head PHASE                     the write head, as record~'s sync outlet phase (0..1), sampled
//                                  by [snapshot~] just before each snapshot/stream message.
//   pace MESSAGES MS               send at most MESSAGES float messages every MS ms (default 4 / 10).
//   floats N                       samples per /stemserver/stream/floats message (default 1536).
//
// Why 1536 floats: the server takes datagrams under 8 KB (macOS drops UDP datagrams over 9216
// bytes). An OSC float costs 4 bytes of data plus 1 byte of type tag, so 1536 floats make a 7720-byte
// message with an int id (28 address + 1540 type tags + 4 id + 4 seq + 6144 samples), leaving room
// for a token of several hundred characters; 1536 is a whole number of frames for 1, 2, 3, 4, 6
// and 8 channels. The 6144 bytes of samples are under the 8192-byte chunk limit.

autowatch = 1;
inlets = 1;
outlets = 3;

var OUT_OSC = 0;      // OSC messages for [udpsend]
var OUT_SNAPSHOT = 1; // messages for the snapshot buffer~ (writewave)
var OUT_CLIENT = 2;   // notifications for [js stemserver_client.js]

var STREAM_BEGIN = "/stemserver/stream/begin";
var STREAM_FLOATS = "/stemserver/stream/floats";
var STREAM_END = "/stemserver/stream/end";

var BLOCK = 16384;     // frames per peek/poke call
var floatsPerMessage = 1536;
var messagesPerTick = 4;
var tickMs = 10;
var writeWaitMs = 100; // buffer~ writes from the low-priority queue: report "written" after it

var ringName = jsarguments.length > 1 ? String(jsarguments[1]) : "stemserver_ring";
var snapshotName = jsarguments.length > 2 ? String(jsarguments[2]) : "stemserver_snapshot";
var headPhase = 0;
var upload = null; // the streamed upload in progress: {messages, next, id, task}

setinletassist(0, "head PHASE, snapshot PATH, stream ID INSTRUMENT K [TOKEN], pace N MS, floats N");
setoutletassist(OUT_OSC, "OSC messages to [udpsend]");
setoutletassist(OUT_SNAPSHOT, "writewave PATH to the snapshot buffer~");
setoutletassist(OUT_CLIENT, "written / streamed / failed, to the client");

function head(phase) {
    headPhase = Number(phase) || 0;
}

function pace(messages, ms) {
    messagesPerTick = Math.max(1, Math.floor(messages));
    tickMs = Math.max(1, Number(ms));
}

function floats(n) {
    floatsPerMessage = Math.max(8, Math.floor(n));
}

// The ring's audio in time order: {frames, channels, rate, data: [channel][frame]}.
function readRing() {
    var ring = new Buffer(ringName);
    var frames = ring.framecount();
    var channels = ring.channelcount();
    if (!(frames > 0) || !(channels > 0)) {
        throw new Error("the buffer~ " + ringName + " is empty (is it in the patch, is audio on?)");
    }
    var rate = Math.round(frames * 1000 / ring.length());
    // The head is where record~ writes next: the oldest sample of the ring.
    var start = Math.round(headPhase * frames) % frames;
    if (start < 0) {
        start += frames;
    }
    var data = [];
    for (var c = 1; c <= channels; c++) {
        var samples = peekRange(ring, c, start, frames - start).concat(peekRange(ring, c, 0, start));
        data.push(samples);
    }
    return {frames: frames, channels: channels, rate: rate, data: data};
}
readRing.local = 1;

// Reading oldest first, much faster than real time, keeps ahead of record~, which overwrites the
// oldest samples as it goes: the copy is consistent without stopping the recording.
function peekRange(buffer, channel, frame, count) {
    var out = [];
    for (var done = 0; done < count; done += BLOCK) {
        var n = Math.min(BLOCK, count - done);
        var part = buffer.peek(channel, frame + done, n);
        out = out.concat(typeof part === "number" ? [part] : part);
    }
    return out;
}
peekRange.local = 1;

function snapshot(path) {
    path = arrayfromargs(arguments).join(" ");
    var audio;
    try {
        audio = readRing();
        var snap = new Buffer(snapshotName);
        if (snap.framecount() !== audio.frames || snap.channelcount() < audio.channels) {
            throw new Error("the buffer~ " + snapshotName + " must be as long as " + ringName +
                            " (" + audio.frames + " frames, " + audio.channels + " channels)");
        }
        for (var c = 0; c < audio.channels; c++) {
            for (var done = 0; done < audio.frames; done += BLOCK) {
                snap.poke(c + 1, done, audio.data[c].slice(done, done + BLOCK));
            }
        }
    } catch (e) {
        outlet(OUT_CLIENT, ["failed", e.message]);
        return;
    }
    outlet(OUT_SNAPSHOT, ["writewave", path]);
    var task = new Task(reportWritten, this, [path, audio.frames, audio.rate, audio.channels]);
    task.schedule(writeWaitMs);
}

function reportWritten(path, frames, rate, channels) {
    outlet(OUT_CLIENT, ["written", path, frames, rate, channels]);
}
reportWritten.local = 1;

function stream(id, instrument, k) {
    var rest = arrayfromargs(arguments).slice(3);
    var token = rest.length % 2 === 1 ? rest.shift() : "";
    var audio;
    try {
        audio = readRing();
    } catch (e) {
        outlet(OUT_CLIENT, ["failed", e.message]);
        return;
    }
    if (upload !== null) {
        upload.task.cancel(); // a new Find replaces an upload still in flight
    }
    var auth = token === "" ? [] : [String(token)];
    // Interleave the channels: frame 0 of every channel, then frame 1...
    var interleaved = new Array(audio.frames * audio.channels);
    for (var f = 0; f < audio.frames; f++) {
        for (var c = 0; c < audio.channels; c++) {
            interleaved[f * audio.channels + c] = audio.data[c][f];
        }
    }
    // Whole frames per message, so every chunk is a whole number of frames.
    var perMessage = Math.max(1, Math.floor(floatsPerMessage / audio.channels)) * audio.channels;
    var messages = [];
    for (var start = 0, seq = 0; start < interleaved.length; start += perMessage, seq++) {
        messages.push([STREAM_FLOATS].concat(auth, [id, seq], interleaved.slice(start, start + perMessage)));
    }
    outlet(OUT_OSC, [STREAM_BEGIN].concat(auth, [id, audio.rate, audio.channels, "float32", String(instrument), k],
                                          rest));
    upload = {messages: messages, next: 0, id: id, auth: auth, task: null};
    upload.task = new Task(sendSome, this);
    upload.task.interval = tickMs;
    upload.task.repeat();
}

// One tick of the paced upload: a few float messages, then the end message after the last.
function sendSome() {
    if (upload === null) {
        return;
    }
    var stop = Math.min(upload.next + messagesPerTick, upload.messages.length);
    for (; upload.next < stop; upload.next++) {
        outlet(OUT_OSC, upload.messages[upload.next]);
    }
    if (upload.next >= upload.messages.length) {
        var finished = upload;
        upload = null;
        finished.task.cancel();
        outlet(OUT_OSC, [STREAM_END].concat(finished.auth, [finished.id, finished.messages.length]));
        outlet(OUT_CLIENT, ["streamed", finished.id, finished.messages.length]);
    }
}
sendSome.local = 1;
