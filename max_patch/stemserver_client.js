// stemserver_client.js: the protocol side of the stemserver patch (classic Max [js], ES5 only).
//
// It speaks docs/protocol.md (OSC over UDP) for the patch: it registers the reply port, pings the
// server, sends the query, collects the ranked results for the menu, and works out where the chosen
// stem must start so that it plays in time with the mix. It has one outlet; every message it sends
// starts with a word naming its destination, and a [route] in the patch sends it there:
//
//   osc ...        to [udpsend]: OSC messages, and the host/port settings
//   listen ...     to [udpreceive]: port N
//   audio ...      to [js stemserver_stream.js]: snapshot PATH | stream ID INSTRUMENT K [TOKEN]
//   light ...      to the status light ([panel]): bgfillcolor R G B A
//   health ...     to the status line: set TEXT
//   info ...       to the message line: set TEXT
//   menu ...       to the results [umenu]: clear | append ITEM
//   path ...       to the path field ([textedit]): set PATH
//   stem ...       to the audition buffer~: replace PATH
//   groove ...     to [groove~ @timestretch 1]: loop 0|1, pitchshiftcent CENTS, then the start position in ms
//   loopend MS     to [groove~]'s right inlet (loop end)
//   rate R         to the [sig~] that drives [groove~]'s speed: the result's stretch (1 when unknown)
//   level GAIN     to the audition gain ([*~])
//
// Messages it understands: settings (instrument, k, host, serverport, replyport, token, stream,
// tempfile, volume, nudge), what the patch reports (inputmode 1|2: adc~ or Live's track;
// transporttempo BPM: [transport]'s tempo, banged at each Find), actions (tick, find, select N,
// play, stop, loaded) and what the server and the stream helper say (pong, registered, result,
// done, servererror, written, streamed, failed). Its message names are the words the patch's
// [prepend]s put before each reply.

autowatch = 1;
inlets = 1;
outlets = 1;

var PROTOCOL = 1;
var REGISTER = "/stemserver/register";
var PING = "/stemserver/ping";
var QUERY_FILE = "/stemserver/query/file";

var SILENCE_MS = 5000;         // no answer for this long: the light turns red
var MIN_TEMPO = 20;            // the tempos the server takes as the mix's (docs/protocol.md)
var MAX_TEMPO = 400;
var LIVE_INPUT = 2;            // inputmode: the device listens to its Live track
var QUERY_TIMEOUT_MS = 60000;  // a query unanswered for this long is given up

var GREY = [0.55, 0.55, 0.55, 1.0];
var GREEN = [0.2, 0.8, 0.3, 1.0];
var ORANGE = [1.0, 0.6, 0.1, 1.0];
var RED = [0.9, 0.2, 0.2, 1.0];

var settings = {
    instrument: "",
    k: 5,
    host: "127.0.0.1",
    serverPort: 9000,
    replyPort: 7401,
    token: "",
    stream: 0,          // 1: always stream the audio (a remote server cannot read our files)
    tempFile: "",       // "" : a file named after the reply port in the system's temporary folder
    volume: 0.8,
    nudgeMs: 0,         // added to the audition position: the round-trip latency of a sound card
    inputMode: 1,       // 1: adc~ (standalone Max), 2: plugin~ (a Max for Live device)
    transportTempo: 0   // [transport]'s tempo: Live's tempo inside Live, an unrelated 120 in standalone Max
};

var nextId = 1;
var startedAt = null;   // first tick
var lastHeard = null;   // last pong or registration confirmation
var pings = [];         // ids of the recent pings
var serverProblem = null;
var query = null;       // {id, windowEnd, sentAt, finished, path, options, results: []}
var selected = null;    // the result being auditioned
var loadedPath = null;  // what the audition buffer~ holds
var playing = false;
var shown = {};         // last text/colour sent to each display, to send only changes

setinletassist(0, "settings, tick, find, select N, play, stop, loaded, and the server's replies");
setoutletassist(0, "messages for the patch, prefixed by their destination (see [route])");

// ---------------------------------------------------------------------------------------------
// Helpers (".local = 1": not callable as Max messages)

function now() {
    return new Date().getTime();
}
now.local = 1;

function emit(words) {
    outlet(0, words);
}
emit.local = 1;

// Send a display update only when it changes.
function show(destination, words) {
    var key = words.join(" ");
    if (shown[destination] === key) {
        return;
    }
    shown[destination] = key;
    emit([destination].concat(words));
}
show.local = 1;

// Text for a message box, menu or text field, one atom per word: a single symbol holding spaces
// would be shown in quotes.
function atomsOf(text) {
    var parts = String(text).split(/\s+/);
    var atoms = [];
    for (var i = 0; i < parts.length; i++) {
        if (parts[i] !== "") {
            atoms.push(parts[i]);
        }
    }
    return atoms;
}
atomsOf.local = 1;

// Status texts lose commas and semicolons (the server's messages may have some).
function plain(text) {
    return String(text).replace(/[,;]/g, "");
}
plain.local = 1;

function info(text) {
    show("info", ["set"].concat(atomsOf(plain(text))));
}
info.local = 1;

function health(colour, text) {
    show("light", ["bgfillcolor"].concat(colour));
    show("health", ["set"].concat(atomsOf(plain(text))));
}
health.local = 1;

// An OSC message to the server, with the token first when the server needs one.
function send(address, args) {
    var auth = settings.token === "" ? [] : [settings.token];
    emit(["osc", address].concat(auth, args));
}
send.local = 1;

function newId() {
    var id = nextId;
    nextId = nextId >= 2147483647 ? 1 : nextId + 1;
    return id;
}
newId.local = 1;

function words(args) {
    var parts = [];
    for (var i = 0; i < args.length; i++) {
        if (args[i] !== "bang" && String(args[i]) !== "") {
            parts.push(String(args[i]));
        }
    }
    return parts.join(" ").replace(/^\s+|\s+$/g, "");
}
words.local = 1;

function isLocal(host) {
    return host === "localhost" || host === "::1" || /^127\./.test(host);
}
isLocal.local = 1;

function streaming() {
    return settings.stream !== 0 || !isLocal(settings.host);
}
streaming.local = 1;

function tempFile() {
    if (settings.tempFile !== "") {
        return settings.tempFile;
    }
    var folder = (typeof max !== "undefined" && max.os === "windows") ? "C:/Users/Public/" : "/tmp/";
    return folder + "stemserver_mix_" + settings.replyPort + ".wav";
}
tempFile.local = 1;

function basename(path) {
    return String(path).replace(/^.*[\/\\]/, "");
}
basename.local = 1;

function fixed(value, digits) {
    return Number(value).toFixed(digits);
}
fixed.local = 1;

// "124" or "123.5"
function bpmText(bpm) {
    return String(Math.round(bpm * 10) / 10);
}
bpmText.local = 1;

// "120 BPM x0.80  A minor (relative +0 st)": what the server knows of a result's tempo and key
// ("" when nothing: a one-shot, or a server of the previous version).
function aboutText(r) {
    var parts = [];
    if (r.tempoBpm !== null) {
        parts.push(bpmText(r.tempoBpm) + " BPM" + (r.stretch !== null ? " x" + fixed(r.stretch, 2) : ""));
    }
    if (r.key !== null) {
        var notes = [];
        if (r.keyRelation !== null) {
            notes.push(r.keyRelation);
            notes.push((r.transpose >= 0 ? "+" : "") + r.transpose + " st");
        }
        parts.push(r.key + (notes.length > 0 ? " (" + notes.join(" ") + ")" : ""));
    }
    return parts.join("  ");
}
aboutText.local = 1;

// "1. fingered 01.wav  0.81  +2.37 s" (+ the offset of the stem at the start of the mix window),
// then its tempo and key when known.
function menuItem(r) {
    var about = aboutText(r);
    return r.rank + ". " + basename(r.path) + "  " + fixed(r.score, 2) + "  +" + fixed(r.offsetS, 2) + " s" +
           (r.loop ? "  loop" : "") + (about !== "" ? "  " + about : "");
}
menuItem.local = 1;

// The reply's tempos and stretches: -1 (or nothing, from a server of the previous version) is unknown.
function positive(value) {
    return typeof value === "number" && value > 0 ? value : null;
}
positive.local = 1;

function knownText(value) {
    return value === undefined || value === null || String(value) === "" ? null : String(value);
}
knownText.local = 1;

// The query's optional key/value pairs: inside Live, the set's tempo; in standalone Max the
// transport has nothing to do with the music coming in, so the server estimates the tempo.
function queryOptions() {
    var bpm = settings.transportTempo;
    if (settings.inputMode === LIVE_INPUT && bpm >= MIN_TEMPO && bpm <= MAX_TEMPO) {
        return ["tempo", bpm];
    }
    return [];
}
queryOptions.local = 1;

// ---------------------------------------------------------------------------------------------
// Settings

function instrument() {
    settings.instrument = words(arrayfromargs(arguments));
}

function k(n) {
    settings.k = Math.max(1, Math.min(100, Math.round(Number(n) || 1)));
}

function host() {
    settings.host = words(arrayfromargs(arguments)) || "127.0.0.1";
    emit(["osc", "host", settings.host]);
}

function serverport(port) {
    settings.serverPort = Math.round(Number(port));
    emit(["osc", "port", settings.serverPort]);
}

function replyport(port) {
    settings.replyPort = Math.round(Number(port));
    emit(["listen", "port", settings.replyPort]);
    send(REGISTER, [settings.replyPort]);
}

function token() {
    settings.token = words(arrayfromargs(arguments));
    serverProblem = null;
}

function stream(flag) {
    settings.stream = Number(flag) ? 1 : 0;
}

function tempfile() {
    settings.tempFile = words(arrayfromargs(arguments));
}

function volume(gain) {
    settings.volume = Math.max(0, Number(gain) || 0);
    if (playing) {
        emit(["level", settings.volume]);
    }
}

function nudge(ms) {
    settings.nudgeMs = Number(ms) || 0;
}

function inputmode(mode) {
    settings.inputMode = Math.round(Number(mode)) || 1;
}

function transporttempo(bpm) {
    settings.transportTempo = Number(bpm) || 0;
}

// ---------------------------------------------------------------------------------------------
// Server health: every tick (from [metro]) registers the reply port and pings.

function tick() {
    var t = now();
    if (startedAt === null) {
        startedAt = t;
        emit(["listen", "port", settings.replyPort]);
        health(GREY, "looking for the server at " + settings.host + ":" + settings.serverPort + "...");
    }
    send(REGISTER, [settings.replyPort]);
    var id = newId();
    pings.push(id);
    if (pings.length > 8) {
        pings.shift();
    }
    send(PING, [id]);
    var silentFor = t - (lastHeard === null ? startedAt : lastHeard);
    if (silentFor > SILENCE_MS) {
        health(RED, "no answer from " + settings.host + ":" + settings.serverPort +
                    " - is `stemserver serve` running? (reply port " + settings.replyPort + ")");
    }
    if (query !== null && !query.finished && t - query.sentAt > QUERY_TIMEOUT_MS) {
        query.finished = true;
        info("no answer to the query after " + QUERY_TIMEOUT_MS / 1000 + " s: try Find again");
    }
}

function pong(id, version, protocol) {
    if (pings.indexOf(id) < 0) {
        return; // another patch's ping on a shared port
    }
    lastHeard = now();
    if (Number(protocol) !== PROTOCOL) {
        health(ORANGE, "the server speaks protocol " + protocol + " but this patch speaks " + PROTOCOL +
                       ": update one of them");
    } else if (serverProblem !== null) {
        health(ORANGE, serverProblem);
    } else {
        health(GREEN, "stemserver " + version + " at " + settings.host + ":" + settings.serverPort);
    }
}

function registered(port) {
    if (Number(port) === settings.replyPort) {
        lastHeard = now();
    }
}

// ---------------------------------------------------------------------------------------------
// A query: Find -> snapshot (or stream) -> results -> done

function find() {
    if (settings.instrument === "") {
        info("type an instrument (e.g. bass) in the Instrument box, then press Find");
        return;
    }
    var id = newId();
    // The audio ends now: the end of the query window is the moment of the snapshot.
    query = {id: id, windowEnd: now(), sentAt: now(), finished: false, path: null, options: queryOptions(),
             results: []};
    selected = null;
    emit(["menu", "clear"]);
    if (streaming()) {
        var args = ["audio", "stream", id, settings.instrument, settings.k];
        emit(args.concat(settings.token === "" ? [] : [settings.token], query.options));
        info("sending the last seconds to " + settings.host + "...");
    } else {
        query.path = tempFile();
        emit(["audio", "snapshot", query.path]);
        info("writing the last seconds to " + query.path + "...");
    }
}

function written(path, frames, rate, channels) {
    if (query === null || query.finished || query.path !== String(path)) {
        return;
    }
    query.sentAt = now();
    send(QUERY_FILE, [query.id, query.path, settings.instrument, settings.k].concat(query.options));
    info("asking for " + settings.k + " " + settings.instrument + " stems (" + fixed(frames / rate, 1) +
         " s of audio)...");
}

function streamed(id, count) {
    if (query !== null && id === query.id) {
        query.sentAt = now();
        info("sent " + count + " chunks - asking for " + settings.k + " " + settings.instrument + " stems...");
    }
}

function failed() {
    if (query !== null) {
        query.finished = true;
    }
    info("could not read the audio: " + words(arrayfromargs(arguments)));
}

// The arguments after loop came with tempo and key (docs/protocol.md); a server of the previous
// version stops at loop, and they are all unknown. The offsets in beats and bars are not shown:
// the audition starts from offset_at_end_s.
function result(id, rank, path, score, offsetS, offsetAtEndS, alignment, duration, label, loop,
                tempoBpm, key, stretch, transpose, keyRelation, offsetBeats, offsetBars) {
    if (query === null || id !== query.id) {
        return; // an answer to an earlier query
    }
    var relation = knownText(keyRelation);
    var r = {rank: rank, path: String(path), score: score, offsetS: offsetS, offsetAtEndS: offsetAtEndS,
             alignment: alignment, duration: duration, label: String(label), loop: Number(loop) !== 0,
             tempoBpm: positive(tempoBpm), key: knownText(key), stretch: positive(stretch),
             transpose: relation === null ? null : Math.round(Number(transpose)), keyRelation: relation,
             windowEnd: query.windowEnd};
    query.results.push(r);
    emit(["menu", "append"].concat(atomsOf(menuItem(r))));
}

function done(id, count, totalMs, mixTempoBpm, mixKey) {
    if (query === null || id !== query.id) {
        return;
    }
    query.finished = true;
    // The mix's tempo and key as the server took them (the client's, or its estimates).
    var mix = [];
    if (positive(mixTempoBpm) !== null) {
        mix.push(bpmText(mixTempoBpm) + " BPM");
    }
    if (knownText(mixKey) !== null) {
        mix.push(String(mixKey));
    }
    if (count > 0) {
        info(count + " stems in " + Math.round(totalMs) + " ms" + (mix.length > 0 ? " (mix " + mix.join(" ") + ")" : "") +
             ": pick one to hear it in time with the mix");
    } else {
        info("no stem matched: is the library indexed (stemserver index)?");
    }
}

var HINTS = {
    bad_audio: " (is audio on and the music playing?)",
    bad_file: " (can the server read this file? remote servers need Stream on)",
    unknown_instrument: "",
    busy: " (the server is busy: try again)",
    library: " (run stemserver index on your samples)",
    unauthorized: " (set the Token the server was started with)"
};

function servererror(id, code, message) {
    code = String(code);
    if (code === "unauthorized") {
        serverProblem = "the server needs a token: type it in the Token box and press Return";
        health(ORANGE, serverProblem);
    }
    var ours = query !== null && (id === query.id || id === "");
    if (!ours) {
        return;
    }
    query.finished = true;
    info("server: " + code + ": " + words([message]) + (HINTS[code] || ""));
}

// ---------------------------------------------------------------------------------------------
// Audition: load the chosen stem, start it where it lines up with the mix now.

function select(index) {
    if (query === null || !(index >= 0 && index < query.results.length)) {
        return;
    }
    selected = query.results[index];
    emit(["path", "set"].concat(atomsOf(selected.path)));
    if (loadedPath === selected.path) {
        startPlayback();
    } else {
        loadedPath = null;
        emit(["stem", "replace", selected.path]);
        info("loading " + basename(selected.path) + "...");
    }
}

// The audition buffer~ finished reading (its right outlet bangs).
function loaded() {
    if (selected === null) {
        return;
    }
    loadedPath = selected.path;
    startPlayback();
}

function play() {
    if (selected !== null) {
        select(query.results.indexOf(selected));
    }
}

function stop() {
    playing = false;
    emit(["level", 0]);
    info("stopped");
}

// offset_at_end_s lines up with the end of the query window, which is the moment of the Find.
// The mix has played on since: start the stem that much further, and it plays in time. The stem
// plays at its stretch (groove~ time-stretches, so its pitch stays), moving on `rate` of its own
// seconds per second of the mix; positions and the loop length stay in the stem's own time.
function startPlayback() {
    var r = selected;
    var rate = r.stretch !== null ? r.stretch : 1;
    var elapsed = now() - r.windowEnd;
    var durationMs = r.duration * 1000;
    var positionMs = r.offsetAtEndS * 1000 + (elapsed + settings.nudgeMs) * rate;
    if (r.loop && durationMs > 0) {
        positionMs = ((positionMs % durationMs) + durationMs) % durationMs;
    }
    emit(["rate", rate]);
    emit(["groove", "pitchshiftcent", r.transpose !== null ? 100 * r.transpose : 0]);
    emit(["groove", "loop", r.loop ? 1 : 0]);
    emit(["loopend", durationMs]);
    emit(["groove", positionMs]);
    emit(["level", settings.volume]);
    playing = true;
    var about = aboutText(r);
    if (!r.loop && positionMs >= durationMs) {
        info(basename(r.path) + " has ended at this point of the mix (it is " + fixed(r.duration, 1) + " s long)");
    } else {
        info("playing " + basename(r.path) + " from " + fixed(positionMs / 1000, 2) + " s in time with the mix" +
             (about !== "" ? " - " + about : ""));
    }
}
startPlayback.local = 1;
