// srnn's page: ask the server for a stream of raw 16-bit PCM, play each piece as it arrives
// (Web Audio, one buffer source per piece, scheduled back to back), draw a spectrogram, and
// count what a listener cares about. Nothing is fetched from anywhere but this server.
"use strict";

const START_DELAY = 0.08; // s: the first piece (and one after an underrun) starts this far ahead
const $ = (id) => document.getElementById(id);

// the counters, also read by the tests (window.srnnStats)
const stats = (window.srnnStats = {
  state: "idle", firstSoundMs: null, received: 0, played: 0, underruns: 0,
  bufferS: 0, speed: null, error: null,
});

let info = null;
let audio = null; // {ctx, analyser}
let run = null; // the stream playing now

async function start() {
  try {
    const response = await fetch("/info", { cache: "no-store" });
    info = await response.json();
  } catch (e) {
    say(`cannot reach the server: ${e}`);
    return;
  }
  $("model").textContent = info.model;
  const d = info.defaults;
  $("temperature").value = d.temperature;
  $("seed").value = d.seed;
  $("endless").checked = d.seconds === null;
  if (d.seconds !== null) $("seconds").value = d.seconds;
  $("seconds").disabled = $("endless").checked;
  if (info.labels.length) {
    $("label-box").hidden = false;
    $("label").value = d.label;
    for (const name of info.labels) {
      const option = document.createElement("option");
      option.value = name;
      $("labels").appendChild(option);
    }
  }
  $("server").textContent = `${info.sample_rate} Hz · one stream here is ${info.speed}x real time · ` +
    `up to ${info.max_listeners} listener(s) at once`;
  $("listeners").textContent = `${info.listening} of ${info.max_listeners}`;
  $("endless").addEventListener("change", () => { $("seconds").disabled = $("endless").checked; });
  $("play").addEventListener("click", play);
  $("stop").addEventListener("click", () => stop("stopped"));
  $("play").disabled = false;
  requestAnimationFrame(draw);
  setInterval(refresh, 250);
}

function say(text) {
  $("message").textContent = text;
}

function query() {
  const q = new URLSearchParams();
  q.set("temperature", $("temperature").value);
  q.set("seed", $("seed").value);
  q.set("seconds", $("endless").checked ? "endless" : $("seconds").value);
  if (info.labels.length && $("label").value) q.set("label", $("label").value);
  return q;
}

function audioOut() {
  if (!audio) {
    const ctx = new AudioContext({ sampleRate: info.sample_rate, latencyHint: "interactive" });
    const analyser = ctx.createAnalyser();
    analyser.fftSize = 512;
    analyser.smoothingTimeConstant = 0;
    analyser.connect(ctx.destination);
    audio = { ctx, analyser, bins: new Uint8Array(analyser.frequencyBinCount) };
  }
  return audio;
}

async function play() {
  stop(null);
  const { ctx } = audioOut();
  await ctx.resume();
  Object.assign(stats, { state: "asking", firstSoundMs: null, received: 0, played: 0, underruns: 0,
    bufferS: 0, speed: null, error: null });
  say("");
  const controller = new AbortController();
  const me = (run = { controller, clicked: performance.now(), next: 0, started: false, odd: null,
    sources: new Set(), ended: false, id: null });
  $("play").disabled = true;
  $("stop").disabled = false;
  let response;
  try {
    response = await fetch(`/stream?${query()}`, { signal: controller.signal, cache: "no-store" });
  } catch (e) {
    if (run === me) fail(`the server did not answer: ${e.message}`);
    return;
  }
  if (!response.ok) {
    const body = await response.json().catch(() => ({ error: response.statusText }));
    fail(body.error);
    return;
  }
  me.id = response.headers.get("X-Stream-Id");
  stats.state = "playing";
  const reader = response.body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done || run !== me) break;
      schedule(me, value);
    }
  } catch (e) {
    if (run === me && e.name !== "AbortError") fail(`the stream broke off: ${e.message}`);
    return;
  }
  me.ended = true;
  finishIfDone(me);
}

function fail(message) {
  stats.error = message;
  stats.state = "refused";
  say(message);
  stop(null, "refused");
}

// one piece of the stream: bytes of little-endian 16-bit samples (a sample may straddle pieces)
function schedule(me, bytes) {
  if (me.odd !== null) {
    const joined = new Uint8Array(bytes.length + 1);
    joined[0] = me.odd;
    joined.set(bytes, 1);
    bytes = joined;
    me.odd = null;
  }
  const n = bytes.length >> 1;
  if (bytes.length & 1) me.odd = bytes[bytes.length - 1];
  if (n === 0) return;
  const { ctx, analyser } = audio;
  const view = new DataView(bytes.buffer, bytes.byteOffset, 2 * n);
  const buffer = ctx.createBuffer(1, n, info.sample_rate);
  const samples = buffer.getChannelData(0);
  for (let i = 0; i < n; i++) samples[i] = view.getInt16(2 * i, true) / 32768;
  stats.received += n;
  const now = ctx.currentTime;
  if (!me.started) {
    me.started = true;
    me.next = now + START_DELAY;
    stats.firstSoundMs = Math.round(performance.now() - me.clicked + 1000 * START_DELAY);
  } else if (me.next < now) { // what was scheduled ran out before this piece came: a gap was heard
    stats.underruns += 1;
    me.next = now + START_DELAY;
  }
  const source = ctx.createBufferSource();
  source.buffer = buffer;
  source.connect(analyser);
  source.start(me.next);
  me.next += n / info.sample_rate;
  me.sources.add(source);
  source.onended = () => {
    me.sources.delete(source);
    if (run === me) stats.played += n;
    finishIfDone(me);
  };
}

function finishIfDone(me) {
  if (run === me && me.ended && me.sources.size === 0) stop("done");
}

function stop(state, keep) {
  const me = run;
  run = null;
  if (me) {
    me.controller.abort();
    for (const source of me.sources) source.stop();
  }
  if (state) stats.state = state;
  if (keep !== "refused") stats.bufferS = 0;
  $("play").disabled = info === null;
  $("stop").disabled = true;
}

// the counters on the page, and the server's figures for this stream
async function refresh() {
  if (run && run.started) stats.bufferS = Math.max(0, run.next - audio.ctx.currentTime);
  $("state").textContent = stats.state;
  $("first-sound").textContent = stats.firstSoundMs === null ? "–" : `${stats.firstSoundMs} ms`;
  $("received").textContent = seconds(stats.received);
  $("played").textContent = seconds(stats.played);
  $("buffer").textContent = `${stats.bufferS.toFixed(2)} s`;
  $("underruns").textContent = stats.underruns;
  $("speed").textContent = stats.speed === null ? "–" : `${stats.speed.toFixed(1)}x real time`;
  $("buffer-bar").style.width = `${Math.min(100, (100 * stats.bufferS) / (info.lead + 0.5))}%`;
  const me = run;
  if (!me || !me.id || refresh.busy) return;
  refresh.busy = true;
  try {
    const [figures, server] = await Promise.all([
      fetch(`/stats?id=${me.id}`, { cache: "no-store" }).then((r) => (r.ok ? r.json() : null)),
      fetch("/info", { cache: "no-store" }).then((r) => r.json()),
    ]);
    if (figures && figures.computing > 0) stats.speed = figures.generated / figures.computing;
    $("listeners").textContent = `${server.listening} of ${server.max_listeners}`;
  } catch (e) {
    // the stream ended meanwhile: nothing to show
  } finally {
    refresh.busy = false;
  }
}

function seconds(samples) {
  return `${(samples / info.sample_rate).toFixed(1)} s (${samples.toLocaleString("en")} samples)`;
}

// the spectrogram: one column per frame, the newest on the right
function draw() {
  requestAnimationFrame(draw);
  if (!audio || !run) return;
  const canvas = $("spectrogram");
  const g = canvas.getContext("2d");
  const { analyser, bins } = audio;
  analyser.getByteFrequencyData(bins);
  const w = canvas.width, h = canvas.height, step = 2;
  g.drawImage(canvas, -step, 0);
  for (let y = 0; y < h; y++) {
    const v = bins[Math.floor(((h - 1 - y) / h) * bins.length)] / 255;
    g.fillStyle = `rgb(${Math.round(255 * Math.min(1, 2 * v))},${Math.round(255 * v * v)},${Math.round(90 * v)})`;
    g.fillRect(w - step, y, step, 1);
  }
}

start();
