// The stemserver page: a client of the server's WebSocket protocol (docs/protocol.md). It sends the
// mix's query window as PCM, shows the results, and auditions a stem against the mix on one
// WebAudio clock. No dependencies, no build step.

const $ = (selector) => document.querySelector(selector);
const token = new URLSearchParams(location.search).get("token");
const tokenQuery = token === null ? "" : `?token=${encodeURIComponent(token)}`;
const context = new AudioContext();
const LEAD_S = 0.1; // how far ahead both sources are scheduled: long enough for the audio thread to see them

const page = {
  context,
  lastSchedule: null,
  lastResult: null,
  schedules: [],
  searches: 0,         // searches answered, with results or an error
  recordedSeconds: 0,  // of the recording in progress
};
window.stemserverPage = page;

const state = {
  mix: null,        // {name, buffer}
  window: null,     // the query window the results were found with: {start, seconds, pcm, sampleRate, live}
  matches: [],
  selected: -1,
  playback: null,   // {passes: [{nodes, end}], timer}
  preview: null,    // the server's render: {fileId, buffer}
};

// -- the WebSocket connection -------------------------------------------------------------------

const connection = {socket: null, open: null, nextId: 1, pending: new Map()};

function connect() {
  const socket = new WebSocket(`ws://${location.host}/${tokenQuery}`);
  socket.binaryType = "arraybuffer";
  connection.socket = socket;
  connection.open = new Promise((resolve, reject) => {
    socket.addEventListener("open", () => resolve(socket));
    socket.addEventListener("close", () => reject(new Error("the connection to the server is closed")));
  });
  connection.open.catch(() => {});
  socket.addEventListener("open", onConnected);
  socket.addEventListener("message", (event) => onMessage(JSON.parse(event.data)));
  socket.addEventListener("close", onDisconnected);
}

function onMessage(message) {
  const request = connection.pending.get(message.id);
  if (!request) return;
  if (message.type === "progress") {
    request.onProgress?.(message);
    return;
  }
  connection.pending.delete(message.id);
  if (message.type === "error") {
    const error = new Error(message.message);
    error.code = message.code;
    request.reject(error);
  } else {
    request.resolve(message);
  }
}

async function onDisconnected() {
  for (const request of connection.pending.values()) request.reject(new Error("the connection to the server closed"));
  connection.pending.clear();
  setStatus(await whyDisconnected());
  setTimeout(connect, 2000);
}

// A browser does not say why a WebSocket handshake failed; the server answers 401 to an audio request
// without the right token, before it looks at the id, so asking for one tells a token refusal apart.
async function whyDisconnected() {
  try {
    const probe = await fetch(audioUrl("0"), {cache: "no-store"});
    if (probe.status === 401) {
      return token === null ? "this server needs its token: open this page as /?token=YOUR_TOKEN"
                            : "the server refused this page's token: open the page with the right ?token=";
    }
  } catch {
    // the server is not answering at all
  }
  return "disconnected: is `stemserver serve` still running? Reconnecting…";
}

// Sends one request (and its PCM as the next frame, when given) and resolves with its reply.
async function request(message, pcm = null, onProgress = null) {
  const socket = await connection.open;
  const id = connection.nextId++;
  const reply = new Promise((resolve, reject) => connection.pending.set(id, {resolve, reject, onProgress}));
  socket.send(JSON.stringify({...message, id}));
  if (pcm) socket.send(pcm);
  return reply;
}

async function onConnected() {
  try {
    const [status, instruments] = await Promise.all([request({type: "status"}), request({type: "instruments"})]);
    showStatus(status);
    addSuggestions(instruments.instruments);
    await loadLibrary();
  } catch (error) {
    showError(error);
  }
}

// -- status, errors, suggestions ----------------------------------------------------------------

function setStatus(text) {
  $("#status").textContent = text;
}

function showStatus(status) {
  const model = String(status.checkpoint ?? "").split(/[\\/]/).pop();
  setStatus(`connected · library ${status.library_files} files · model ${model}`);
  const capture = $("#capture");
  capture.disabled = !status.capture;
  capture.title = status.capture
    ? `query the last seconds of ${status.capture}, the server's live input`
    : "the server has no live input: start it with --capture DEVICE";
}

function showError(error) {
  const box = $("#error");
  box.textContent = error ? String(error.message ?? error) : "";
  box.hidden = !error;
}

function addSuggestions(names) {
  const list = $("#instrument-list");
  const known = new Set([...list.options].map((option) => option.value));
  for (const name of names ?? []) {
    if (!name || known.has(name)) continue;
    known.add(name);
    list.append(new Option(name, name));
  }
}

// -- the mix ------------------------------------------------------------------------------------

async function useMixFile(file) {
  showError(null);
  try {
    const buffer = await context.decodeAudioData(await file.arrayBuffer());
    setMix(file.name, buffer);
  } catch (error) {
    showError(new Error(`${file.name}: the browser cannot decode this audio (${error.message ?? error})`));
  }
}

function setMix(name, buffer) {
  state.mix = {name, buffer};
  $("#mix-name").textContent = `${name} · ${buffer.duration.toFixed(1)} s`;
  drawMix();
}

function queryWindow() {
  const duration = state.mix.buffer.duration;
  const wanted = Number($("#seconds").value) || 8;
  const seconds = Math.min(Math.max(wanted, 2), 30, Math.max(duration, 2));
  const start = Math.min(Math.max(Number($("#window-start").value) || 0, 0), Math.max(duration - seconds, 0));
  return {start, seconds};
}

// The window's samples, mixed down to mono, as float32 (little-endian, as the protocol wants).
function windowPcm(buffer, start, seconds) {
  const first = Math.round(start * buffer.sampleRate);
  const count = Math.min(Math.round(seconds * buffer.sampleRate), buffer.length - first);
  const mono = new Float32Array(count);
  for (let channel = 0; channel < buffer.numberOfChannels; channel++) {
    const data = buffer.getChannelData(channel).subarray(first, first + count);
    for (let i = 0; i < count; i++) mono[i] += data[i] / buffer.numberOfChannels;
  }
  return mono;
}

function drawMix() {
  const canvas = $("#mix-waveform");
  const draw = fitCanvas(canvas);
  if (!state.mix) return;
  const {buffer} = state.mix;
  drawPeaks(draw, buffer, "#5aa9e6");
  const {start, seconds} = queryWindow();
  $("#window-start").value = start.toFixed(2);
  const scale = canvas.width / buffer.duration;
  draw.fillStyle = "rgba(255, 200, 80, 0.18)";
  draw.fillRect(start * scale, 0, seconds * scale, canvas.height);
  draw.fillStyle = "rgba(255, 200, 80, 0.9)";
  draw.fillRect(start * scale, 0, 2, canvas.height);
}

function fitCanvas(canvas) {
  const ratio = window.devicePixelRatio || 1;
  canvas.width = Math.max(1, Math.round(canvas.clientWidth * ratio));
  canvas.height = Math.max(1, Math.round(canvas.clientHeight * ratio));
  const draw = canvas.getContext("2d");
  draw.clearRect(0, 0, canvas.width, canvas.height);
  return draw;
}

function drawPeaks(draw, buffer, color) {
  const {width, height} = draw.canvas;
  const data = buffer.getChannelData(0);
  const step = Math.max(1, Math.floor(data.length / width));
  draw.fillStyle = color;
  for (let x = 0; x < width; x++) {
    let low = 0;
    let high = 0;
    for (let i = x * step; i < Math.min((x + 1) * step, data.length); i++) {
      if (data[i] < low) low = data[i];
      if (data[i] > high) high = data[i];
    }
    draw.fillRect(x, (1 - high) * height / 2, 1, Math.max(1, (high - low) * height / 2));
  }
}

function setWindowStartFromClick(event) {
  if (!state.mix) return;
  const rect = event.currentTarget.getBoundingClientRect();
  $("#window-start").value = (((event.clientX - rect.left) / rect.width) * state.mix.buffer.duration).toFixed(2);
  drawMix();
}

// -- recording from an input device -------------------------------------------------------------

const recording = {recorder: null, chunks: []};

async function toggleRecording() {
  const button = $("#record");
  if (recording.recorder) {
    recording.recorder.stop();
    return;
  }
  showError(null);
  try {
    const stream = await navigator.mediaDevices.getUserMedia({audio: true});
    const recorder = new MediaRecorder(stream);
    recording.recorder = recorder;
    recording.chunks = [];
    const started = performance.now();
    page.recordedSeconds = 0;
    recorder.addEventListener("dataavailable", (event) => {
      recording.chunks.push(event.data);
      page.recordedSeconds = (performance.now() - started) / 1000;
    });
    recorder.addEventListener("stop", async () => {
      stream.getTracks().forEach((track) => track.stop());
      recording.recorder = null;
      button.textContent = "● Record";
      button.setAttribute("aria-pressed", "false");
      const blob = new Blob(recording.chunks, {type: recorder.mimeType});
      await useMixFile(new File([blob], `recording ${new Date().toLocaleTimeString()}`, {type: blob.type}));
    });
    recorder.start(250);
    button.textContent = "■ Stop recording";
    button.setAttribute("aria-pressed", "true");
  } catch (error) {
    showError(new Error(`cannot record from an input device: ${error.message ?? error}`));
  }
}

// -- searching ----------------------------------------------------------------------------------

function queryFields() {
  const instrument = $("#instrument").value.trim();
  if (!instrument) throw new Error("type an instrument first (bass, drums, nylon guitar…)");
  return {instrument, k: Math.min(Math.max(Math.round(Number($("#k").value) || 10), 1), 100)};
}

function search() {
  return runSearch("searching…", async () => {
    const fields = queryFields();
    if (!state.mix) throw new Error("choose, drop or record a mix first");
    const {start, seconds} = queryWindow();
    const pcm = windowPcm(state.mix.buffer, start, seconds);
    const sampleRate = state.mix.buffer.sampleRate;
    const sent = pcm.length / sampleRate;
    const result = await request({type: "query", ...fields, seconds: sent, sample_rate: sampleRate, channels: 1,
                                  format: "float32"}, pcm.buffer);
    return {result, window: {start, seconds: sent, pcm, sampleRate, live: false}};
  });
}

function searchLive() {
  return runSearch("searching the live input…", async () => {
    const seconds = Math.min(Math.max(Number($("#seconds").value) || 8, 2), 30);
    const result = await request({type: "query_now", ...queryFields(), seconds});
    return {result, window: {start: 0, seconds, pcm: null, sampleRate: 0, live: true}};
  });
}

// One search, whichever audio it sends: `ask` returns the server's result and the window it was made with.
async function runSearch(status, ask) {
  showError(null);
  try {
    $("#result-count").textContent = status;
    const {result, window} = await ask();
    state.window = window;
    showResult(result);
  } catch (error) {
    $("#result-count").textContent = "";
    showError(error);
  } finally {
    page.searches += 1;
  }
}

function showResult(result) {
  stop();
  page.lastResult = result;
  state.matches = result.matches;
  state.selected = -1;
  const mixFacts = [result.mix_tempo_bpm ? `${result.mix_tempo_bpm.toFixed(1)} BPM` : null, result.mix_key]
    .filter(Boolean).join(", ");
  $("#result-count").textContent = `${result.matches.length} for “${result.instrument}”`
    + (mixFacts ? ` · mix ${mixFacts}` : "");
  $("#results").replaceChildren(...result.matches.map(resultItem));
  if (result.matches.length) select(0);
}

// -- results ------------------------------------------------------------------------------------

const number = (value, digits) => (value === null || value === undefined ? null : Number(value).toFixed(digits));
const baseName = (path) => path.split(/[\\/]/).pop();

function audioUrl(fileId) {
  return new URL(`/audio/${encodeURIComponent(fileId)}${tokenQuery}`, location.href).href;
}

function resultItem(match, index) {
  const item = document.createElement("li");
  item.className = "result";
  item.dataset.rank = match.rank;
  item.dataset.fileId = match.file_id;
  item.draggable = true;
  item.setAttribute("role", "option");
  item.setAttribute("aria-selected", "false");
  item.title = match.path;
  const thumb = document.createElement("canvas");
  thumb.className = "thumb";
  const offset = [`offset ${number(match.offset_s, 2)} s`,
                  match.offset_beats !== null && match.offset_beats !== undefined
                    ? `beat ${number(match.offset_beats, 1)} · bar ${number(match.offset_bars, 2)}` : null];
  const fit = [match.stretch ? `×${number(match.stretch, 3)}` : null,
               match.key_relation ? `${match.transpose > 0 ? "+" : ""}${match.transpose} st` : null,
               match.key_relation];
  const meta = document.createElement("div");
  meta.className = "meta";
  meta.append(
    span("folder", match.folder ?? ""), span("offset", offset.filter(Boolean).join(" · ")),
    span("tempo-key", [match.tempo_bpm ? `${number(match.tempo_bpm, 1)} BPM` : "no tempo", match.key ?? "no key"]
      .join(" · ")),
    span("fit", fit.filter(Boolean).join(" · ") || "no fit"));
  if (match.loop) meta.append(span("loop", "loop"));
  item.append(span("rank", `${match.rank}`), thumb, span("name", baseName(match.path)),
              span("score", number(match.score, 3)), copyButton(match.path), meta);
  item.addEventListener("click", (event) => {
    if (!event.target.closest("button")) select(index);
  });
  item.addEventListener("dblclick", () => play());
  item.addEventListener("dragstart", (event) => dragOut(event, match));
  stemBuffer(match.file_id).then((buffer) => drawThumb(thumb, buffer), () => {});
  return item;
}

function span(className, text) {
  const element = document.createElement("span");
  element.className = className;
  element.textContent = text;
  return element;
}

function copyButton(path) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "copy-path";
  button.textContent = "copy path";
  button.title = path;
  button.addEventListener("click", () => copyPath(button, path));
  return button;
}

async function copyPath(button, path) {
  try {
    await navigator.clipboard.writeText(path);
    button.textContent = "copied";
  } catch {
    // No clipboard permission: leave the path selected for Ctrl+C.
    const field = document.createElement("input");
    field.className = "path-field";
    field.value = path;
    field.readOnly = true;
    button.replaceWith(field);
    field.select();
  }
}

function drawThumb(canvas, buffer) {
  drawPeaks(fitCanvas(canvas), buffer, "#8fd694");
}

const buffers = new Map();

function stemBuffer(fileId) {
  if (!buffers.has(fileId)) {
    const loading = fetch(audioUrl(fileId))
      .then((response) => {
        if (!response.ok) throw new Error(`the server answered ${response.status} for the stem's audio`);
        return response.arrayBuffer();
      })
      .then((bytes) => context.decodeAudioData(bytes));
    loading.catch(() => buffers.delete(fileId));
    buffers.set(fileId, loading);
  }
  return buffers.get(fileId);
}

function select(index) {
  if (index < 0 || index >= state.matches.length) return;
  const items = $("#results").children;
  items[state.selected]?.classList.remove("selected");
  items[state.selected]?.setAttribute("aria-selected", "false");
  state.selected = index;
  items[index].classList.add("selected");
  items[index].setAttribute("aria-selected", "true");
  items[index].scrollIntoView({block: "nearest"});
  state.preview = null;
  $("#preview-status").textContent = "";
  showSelected(state.matches[index]);
  $("#play").disabled = false;
  $("#render-preview").disabled = !state.window?.pcm;
  const wasPlaying = state.playback !== null;
  stemBuffer(state.matches[index].file_id).then(() => {
    if (wasPlaying && state.selected === index) play();
  }, showError);
}

function showSelected(match) {
  const line = $("#selected-stem");
  const name = document.createElement("strong");
  name.textContent = baseName(match.path);
  const start = state.window.live ? `${number(match.offset_at_end_s, 2)} s, joining the live input now`
    : `${number(match.offset_s, 2)} s with the mix at ${number(state.window.start, 2)} s`;
  line.replaceChildren(name, ` · stem from ${start}${match.loop ? " · loops" : ""}`);
}

function onKey(event) {
  if (event.target.closest("input:not([type=checkbox]), textarea, select")) return;
  if (event.key === " " && !event.target.closest("button, input")) {
    event.preventDefault();
    togglePlay();
  } else if (event.key === "ArrowDown" || event.key === "ArrowUp") {
    event.preventDefault();
    select(state.selected + (event.key === "ArrowDown" ? 1 : -1));
  }
}

// Chromium's drag to the desktop or a DAW: DownloadURL is "MIME:NAME:URL".
const MIME = {wav: "audio/wav", opus: "audio/ogg", ogg: "audio/ogg", flac: "audio/flac", mp3: "audio/mpeg",
              aif: "audio/aiff", aiff: "audio/aiff"};

function dragOut(event, match) {
  const name = baseName(match.path);
  const mime = MIME[name.split(".").pop().toLowerCase()] ?? "application/octet-stream";
  const url = audioUrl(match.file_id);
  event.dataTransfer.effectAllowed = "copy";
  event.dataTransfer.setData("DownloadURL", `${mime}:${name}:${url}`);
  event.dataTransfer.setData("text/uri-list", url);
  event.dataTransfer.setData("text/plain", match.path);
}

// -- audition: the mix and the stem on one clock ------------------------------------------------

const graph = {mix: context.createGain(), stem: context.createGain()};
graph.mix.connect(context.destination);
graph.stem.connect(context.destination);

const dB = (value) => 10 ** (Number(value) / 20);

function updateGains() {
  const mixSolo = $("#mix-solo").checked;
  const stemSolo = $("#stem-solo").checked;
  const mixOn = !$("#mix-mute").checked && (mixSolo || !stemSolo);
  const stemOn = !$("#stem-mute").checked && (stemSolo || !mixSolo);
  graph.mix.gain.value = mixOn ? dB($("#mix-gain").value) : 0;
  graph.stem.gain.value = stemOn ? dB($("#stem-gain").value) : 0;
  $("#mix-gain-value").textContent = `${$("#mix-gain").value} dB`;
  $("#stem-gain-value").textContent = `${$("#stem-gain").value} dB`;
}

function source(buffer, output) {
  const node = context.createBufferSource();
  node.buffer = buffer;
  node.connect(output);
  return node;
}

// One pass: the mix from the window start and the stem from its offset, both at `when`.
function schedulePass(when, buffer, match) {
  const {start, seconds, live} = state.window;
  const nodes = [];
  let mixNode = null;
  if (state.mix && !live) {
    mixNode = source(state.mix.buffer, graph.mix);
    mixNode.start(when, start);
    nodes.push(mixNode);
  }
  const stem = source(buffer, graph.stem);
  const rate = $("#fit").checked && match.stretch ? match.stretch : 1;
  // Varispeed: WebAudio's detune is a rate too (computedPlaybackRate = playbackRate * 2^(detune/1200)),
  // so a browser cannot stretch without moving the pitch; the server's preview does both.
  stem.playbackRate.value = rate;
  stem.detune.value = 0;
  // A live query's window ended now: the stem joins at the window's end.
  let offset = live ? match.offset_at_end_s : match.offset_s;
  if (match.loop) {
    stem.loop = true;
    stem.loopStart = 0;
    stem.loopEnd = buffer.duration;
    offset %= buffer.duration;
  }
  stem.start(when, offset);
  nodes.push(stem);
  const end = $("#loop").checked ? when + seconds : Infinity;
  if (end !== Infinity) nodes.forEach((node) => node.stop(end));
  page.schedules.push({when, mixOffset: mixNode ? start : null, stemOffset: offset, playbackRate: rate, detune: 0});
  return {nodes, end, last: mixNode ?? stem};
}

async function play() {
  const match = state.matches[state.selected];
  if (!match) return;
  stop();
  showError(null);
  try {
    await context.resume();
    const buffer = await stemBuffer(match.file_id);
    if (state.matches[state.selected] !== match) return;
    startPlayback(buffer, match);
  } catch (error) {
    showError(error);
  }
}

function startPlayback(buffer, match) {
  const when = context.currentTime + LEAD_S;
  const seconds = state.window.seconds;
  const playback = {passes: [], timer: null, when, loop: $("#loop").checked};
  state.playback = playback;
  page.schedules = [];
  const addPass = () => playback.passes.push(schedulePass(when + playback.passes.length * seconds, buffer, match));
  addPass();
  page.lastSchedule = page.schedules[0];
  if ($("#loop").checked) {
    addPass(); // always one pass ahead on the clock, so the seam never waits on a timer
    playback.timer = setInterval(() => {
      const now = context.currentTime;
      while (when + (playback.passes.length - 1) * seconds <= now) addPass();
      playback.passes = playback.passes.filter((pass) => pass.end > now);
    }, 250);
  } else {
    playback.passes[0].last.addEventListener("ended", () => {
      if (state.playback === playback) stop();
    });
  }
  setPlaying(true);
  requestAnimationFrame(() => movePlayhead(playback));
}

// Where the mix is, on the waveform, while it plays.
function movePlayhead(playback) {
  const head = $("#mix-playhead");
  if (state.playback !== playback || !state.mix || state.window.live) {
    head.hidden = true;
    return;
  }
  const {start, seconds} = state.window;
  const elapsed = Math.max(context.currentTime - playback.when, 0);
  const position = start + (playback.loop ? elapsed % seconds : elapsed);
  head.style.left = `${(100 * Math.min(position, state.mix.buffer.duration)) / state.mix.buffer.duration}%`;
  head.hidden = false;
  requestAnimationFrame(() => movePlayhead(playback));
}

function playPreview() {
  stop();
  const when = context.currentTime + LEAD_S;
  const node = source(state.preview.buffer, context.destination);
  node.loop = $("#loop").checked;
  node.start(when, 0);
  const playback = {passes: [{nodes: [node], end: Infinity}], timer: null};
  node.addEventListener("ended", () => {
    if (state.playback === playback) stop();
  });
  state.playback = playback;
  page.lastSchedule = {when, mixOffset: 0, stemOffset: null, playbackRate: 1, detune: 0, preview: true};
  setPlaying(true);
}

function stop() {
  const playback = state.playback;
  state.playback = null;
  if (playback) {
    clearInterval(playback.timer);
    for (const node of playback.passes.flatMap((pass) => pass.nodes)) node.stop();
  }
  setPlaying(false);
}

function setPlaying(playing) {
  const button = $("#play");
  button.textContent = playing ? "■ Stop" : "▶ Play";
  button.setAttribute("aria-pressed", String(playing));
}

function togglePlay() {
  if (state.playback) stop();
  else play();
}

// -- the server's preview (Rubber Band) ----------------------------------------------------------

async function renderPreview() {
  const match = state.matches[state.selected];
  if (!match || !state.window?.pcm) return;
  const status = $("#preview-status");
  status.textContent = "rendering on the server…";
  showError(null);
  try {
    const {pcm, sampleRate, seconds} = state.window;
    const reply = await request({type: "preview", stem: match.path, offset: match.offset_s,
                                 stretch: match.stretch ?? 1, transpose: match.transpose ?? 0, seconds,
                                 sample_rate: sampleRate, channels: 1, format: "float32"}, pcm.buffer.slice(0));
    const buffer = await stemBuffer(reply.file_id);
    if (state.matches[state.selected] !== match) return;
    state.preview = {fileId: reply.file_id, buffer};
    status.textContent = `preview ready · ${buffer.duration.toFixed(1)} s at the mix's tempo and key: playing`;
    playPreview();
  } catch (error) {
    status.textContent = "no preview";
    showError(error);
  }
}

// -- the library view ----------------------------------------------------------------------------

function showView(name) {
  const library = name === "library";
  $("#search-view").hidden = library;
  $("#library-view").hidden = !library;
  $("#search-tab").setAttribute("aria-selected", String(!library));
  $("#library-tab").setAttribute("aria-selected", String(library));
  if (library) loadLibrary().catch(showError);
}

const minutes = (seconds) => `${Math.floor(seconds / 60)}:${String(Math.round(seconds % 60)).padStart(2, "0")}`;

function row(...cells) {
  const tr = document.createElement("tr");
  for (const cell of cells) {
    const td = document.createElement("td");
    td.textContent = cell ?? "—";
    tr.append(td);
  }
  return tr;
}

async function loadLibrary() {
  const library = await request({type: "library"});
  addSuggestions(library.instruments);
  $("#library-folders tbody").replaceChildren(
    ...library.folders.map((folder) => row(folder.folder || "(top)", String(folder.files), minutes(folder.seconds))));
  const failures = library.failures.map((failure) => row(failure.path, failure.error));
  if (!failures.length) {
    const none = row("no failures");
    none.firstChild.colSpan = 2;
    none.className = "none";
    failures.push(none);
  }
  $("#library-failures tbody").replaceChildren(...failures);
  $("#library-files tbody").replaceChildren(...libraryFileRows(library.files));
}

function libraryFileRows(files) {
  const rows = [];
  let folder;
  for (const file of files) {
    if (file.folder !== folder) {
      folder = file.folder;
      const heading = row(folder || "(top)");
      heading.className = "group";
      heading.firstChild.colSpan = 6;
      rows.push(heading);
    }
    rows.push(row(file.name, file.folder, file.instrument ?? file.label, `${number(file.duration_s, 1)} s`,
                  file.tempo_bpm ? `${number(file.tempo_bpm, 1)} BPM` : null, file.key));
  }
  return rows;
}

async function reindex() {
  const button = $("#reindex");
  const bar = $("#reindex-progress");
  const status = $("#reindex-status");
  button.disabled = true;
  bar.value = 0;
  status.textContent = "re-indexing…";
  showError(null);
  try {
    const done = await request({type: "reindex"}, null, (progress) => {
      bar.max = Math.max(progress.total, 1);
      bar.value = progress.done;
      status.textContent = `${progress.stage}: ${progress.done} of ${progress.total}`;
    });
    bar.value = bar.max;
    status.textContent = `reindexed: ${done.added} added, ${done.changed} changed, ${done.removed} removed, `
      + `${done.failed} failed · ${done.files} files (index generation ${done.generation})`;
    await loadLibrary();
    showStatus(await request({type: "status"}));
  } catch (error) {
    status.textContent = "re-indexing failed";
    showError(error);
  } finally {
    button.disabled = false;
  }
}

// -- wiring --------------------------------------------------------------------------------------

function onDrop(event) {
  event.preventDefault();
  $("#drop-zone").classList.remove("over");
  const file = event.dataTransfer.files[0];
  if (file) useMixFile(file);
}

function wire() {
  const zone = $("#drop-zone");
  for (const type of ["dragenter", "dragover"]) {
    zone.addEventListener(type, (event) => {
      event.preventDefault();
      zone.classList.add("over");
    });
  }
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", onDrop);
  $("#mix-file").addEventListener("change", (event) => {
    if (event.target.files[0]) useMixFile(event.target.files[0]);
  });
  $("#record").addEventListener("click", toggleRecording);
  $("#capture").addEventListener("click", searchLive);
  $("#mix-waveform").addEventListener("click", setWindowStartFromClick);
  $("#window-start").addEventListener("change", drawMix);
  $("#seconds").addEventListener("change", drawMix);
  $("#search").addEventListener("click", search);
  $("#instrument").addEventListener("keydown", (event) => {
    if (event.key === "Enter") search();
  });
  document.addEventListener("keydown", onKey);
  $("#play").addEventListener("click", togglePlay);
  for (const id of ["#mix-mute", "#mix-solo", "#stem-mute", "#stem-solo", "#mix-gain", "#stem-gain"]) {
    $(id).addEventListener("input", updateGains);
  }
  $("#render-preview").addEventListener("click", renderPreview);
  $("#search-tab").addEventListener("click", () => showView("search"));
  $("#library-tab").addEventListener("click", () => showView("library"));
  $("#reindex").addEventListener("click", reindex);
  window.addEventListener("resize", () => {
    drawMix();
  });
  updateGains();
  drawMix();
}

wire();
connect();
