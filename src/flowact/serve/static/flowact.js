// The flowact page: a session's video and speech over WebRTC, its events and commands over a WebSocket.
//
// Automation contract (docs/serve.md): /?image=NAME&say=NAME&autoplay=1 starts a session by itself
// (?session=ID watches one an assistant started; ?token=T for a server with --token; ?mic=0 does
// not ask for the microphone), and
// window.flowact is kept current:
//   state   the character's state (idle, speaking, listening, thinking, ...) as shown now
//   frames  video frames this browser has received (framesAt: when, performance.now() ms)
//   width, height: the video's size
//   audio   true while an audio track is playing (unmuted, samples arriving)
//   status  idle | starting | live | ended | error         error: the last error message (or null)
//   latency [ms, ...]: each command sent from this page to the first frame showing it, as displayed
"use strict";

const params = new URLSearchParams(location.search);
const token = params.get("token");
const $ = (id) => document.getElementById(id);
const flowact = (window.flowact = {
  status: "idle", state: null, frames: 0, width: 0, height: 0, audio: false,
  session: null, error: null, errors: [], latency: [], serverLatency: [], audioEnergy: 0, fps: 0,
});

let pc = null, ws = null, mic = null, session = null, rtpOrigin = null, statsTimer = null;
let commandSeq = 0;
const sentAt = new Map();   // command id -> performance.now() when sent
const waiting = new Map();  // command id -> {slot, sent}: the stream slot that first shows it
const shown = [];           // recent [slot, display time] of frames shown, for commands reported late

// ---- the server's API ----------------------------------------------------------------------

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (token) headers["Authorization"] = "Bearer " + token;
  const r = await fetch(path, Object.assign({}, options, { headers }));
  const body = await r.json().catch(() => ({ error: `${r.status} ${r.statusText}` }));
  if (!r.ok) throw new Error(body.error || `${r.status} ${r.statusText}`);
  return body;
}

function setStatus(s) {
  flowact.status = s;
  $("status-text").textContent = s;
  const live = s === "starting" || s === "live";
  $("start").disabled = live;
  $("stop").disabled = !live;
  for (const b of [$("speak"), $("interrupt"), $("mic"), ...document.querySelectorAll("#states button")]) b.disabled = !live;
}

function showError(message) {
  flowact.error = message;
  flowact.errors.push(message);
  const li = document.createElement("li");
  li.textContent = message;
  $("errors").prepend(li);
  while ($("errors").children.length > 6) $("errors").lastChild.remove();
}

async function loadMedia() {
  try {
    const m = await api("/api/media");
    fill($("picture"), m.pictures, params.get("image"));
    fill($("audio"), m.audio, params.get("say"));
  } catch (e) { showError("media list: " + e.message); }
}

function fill(select, names, chosen) {
  select.innerHTML = "";
  for (const n of names) select.add(new Option(n, n, false, n === chosen));
}

async function upload(kind, file) {
  const q = `/api/uploads?kind=${kind}&name=${encodeURIComponent(file.name)}`;
  const r = await api(q, { method: "POST", body: file, headers: { "Content-Type": "application/octet-stream" } });
  const select = kind === "picture" ? $("picture") : $("audio");
  select.add(new Option(`${file.name} (uploaded)`, r.name, true, true));
  return r.name;
}

// ---- a session ---------------------------------------------------------------------------------

async function start(image) {
  if (!image) return showError("pick a picture first");
  setStatus("starting");
  try {
    const s = await api("/api/sessions", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ image }),
    });
    await watch(s);
  } catch (e) {
    showError(e.message);
    await stop("error");
  }
}

async function watch(s) {
  session = s;
  flowact.session = s.id;
  flowact.width = s.width; flowact.height = s.height;
  rtpOrigin = s.rtp_origin;
  $("agent-hint").textContent = `POST /api/sessions/${s.id}/commands {"cmd": "speak", "audio": "..."}`;
  openSocket(s.id);
  await getMicrophone();
  pc = new RTCPeerConnection();
  pc.addTransceiver("video", { direction: "recvonly" });
  const audio = pc.addTransceiver("audio", { direction: "sendrecv" });
  if (mic) await audio.sender.replaceTrack(mic.getAudioTracks()[0]);
  const stream = new MediaStream();
  pc.ontrack = (e) => {
    // live, not smooth: ask the browser to buffer as little as it can (a hint; Chromium honours it)
    if ("jitterBufferTarget" in e.receiver) e.receiver.jitterBufferTarget = 0;
    stream.addTrack(e.track);
    play(stream);
  };
  pc.onconnectionstatechange = () => {
    if (["failed", "closed"].includes(pc && pc.connectionState) && flowact.status === "live") {
      showError("the connection to the server was lost");
      stop("ended");
    }
  };
  await pc.setLocalDescription(await pc.createOffer());
  await iceGathered(pc);
  const answer = await api(`/api/sessions/${s.id}/offer`, {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ sdp: pc.localDescription.sdp, type: pc.localDescription.type }),
  });
  await pc.setRemoteDescription(answer);
  setStatus("live");
  statsTimer = setInterval(pollStats, 250);
}

function iceGathered(pc) {  // aiortc takes no trickled candidates: send the offer with all of them
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((done) => {
    const timer = setTimeout(done, 3000);
    pc.addEventListener("icegatheringstatechange", () => {
      if (pc.iceGatheringState === "complete") { clearTimeout(timer); done(); }
    });
  });
}

async function getMicrophone() {
  if (mic || !navigator.mediaDevices || params.get("mic") === "0") return;  // ?mic=0: watch only
  try {
    mic = await navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: true, noiseSuppression: true } });
    $("mic").textContent = "Microphone on";
    $("mic").classList.add("on");
    meter(mic);
  } catch (e) {
    showError(`microphone: ${e.message} (the character will not hear you; it still speaks)`);
  }
}

function meter(stream) {
  const ctx = new AudioContext();
  const analyser = ctx.createAnalyser();
  ctx.createMediaStreamSource(stream).connect(analyser);
  const buf = new Float32Array(analyser.fftSize);
  setInterval(() => {
    analyser.getFloatTimeDomainData(buf);
    let sum = 0;
    for (const v of buf) sum += v * v;
    $("mic-level").value = Math.min(1, 4 * Math.sqrt(sum / buf.length));
  }, 100);
}

async function play(stream) {
  const video = $("video");
  if (video.srcObject !== stream) {
    video.srcObject = stream;
    video.requestVideoFrameCallback(onFrame);
  }
  video.muted = false;
  try {
    await video.play();
  } catch (e) {  // no user gesture yet (an autoplaying page): play muted, offer to unmute
    video.muted = true;
    await video.play().catch(() => {});
    $("unmute").hidden = false;
  }
  $("stage").classList.add("live");
}

$("unmute").onclick = () => { $("video").muted = false; $("video").play(); $("unmute").hidden = true; };

function openSocket(id) {
  const q = new URLSearchParams({ role: "viewer" });
  if (token) q.set("token", token);
  ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/sessions/${id}/ws?${q}`);
  ws.onmessage = (m) => onEvent(JSON.parse(m.data));
  ws.onclose = () => { if (flowact.status === "live") stop("ended", false); };
}

function onEvent(ev) {
  switch (ev.event) {
    case "session": case "video":
      if (ev.rtp_origin != null) rtpOrigin = ev.rtp_origin;
      if (ev.state) setState(ev.state);
      break;
    case "state": setState(ev.state); break;
    case "command":
      if (ev.latency_ms != null) flowact.serverLatency.push(ev.latency_ms);
      if (ev.id && sentAt.has(ev.id) && ev.frame != null) {
        waiting.set(ev.id, { slot: ev.frame, sent: sentAt.get(ev.id) });
        sentAt.delete(ev.id);
        resolveShown();
      }
      break;
    case "error": showError(ev.message); break;
    case "late": break;
    case "ended":
      if (ev.error) showError(`the session failed: ${ev.error}`);
      stop(ev.error ? "error" : "ended", false);
      break;
  }
}

function setState(s) { flowact.state = s; $("f-state").textContent = s; }

// a frame is shown: which stream slot it is (its RTP timestamp), and which waiting commands it shows
function onFrame(now, meta) {
  const video = $("video");
  if (rtpOrigin != null && meta.rtpTimestamp != null && session) {
    const slot = Math.round(((meta.rtpTimestamp - rtpOrigin) >>> 0) / (90000 / session.fps));
    shown.push([slot, meta.expectedDisplayTime || now]);
    if (shown.length > 200) shown.shift();
    resolveShown();
  }
  if (video.srcObject) video.requestVideoFrameCallback(onFrame);
}

function resolveShown() {
  for (const [id, w] of waiting) {
    const hit = shown.find(([slot]) => slot >= w.slot);
    if (!hit) continue;
    waiting.delete(id);
    const ms = Math.round(hit[1] - w.sent);
    flowact.latency.push(ms);
    const sorted = [...flowact.latency].sort((a, b) => a - b);
    $("f-latency").textContent = `${ms} ms (median ${sorted[Math.floor(sorted.length / 2)]} ms of ${sorted.length})`;
  }
}

let lastFrames = 0, lastSamples = 0, lastTime = 0;
async function pollStats() {
  if (!pc) return;
  const stats = await pc.getStats();
  let samples = 0;
  stats.forEach((r) => {
    if (r.type !== "inbound-rtp") return;
    if (r.kind === "video") {
      flowact.frames = r.framesReceived || 0;
      if (r.frameWidth) { flowact.width = r.frameWidth; flowact.height = r.frameHeight; }
    } else if (r.kind === "audio") {
      samples = r.totalSamplesReceived || 0;
      flowact.audioEnergy = r.totalAudioEnergy || 0;
    }
  });
  const t = performance.now(), video = $("video");
  flowact.framesAt = t;  // when `frames` was read (performance.now(), ms): rates over exact spans
  if (lastTime) flowact.fps = Math.round((10000 * (flowact.frames - lastFrames)) / (t - lastTime)) / 10;
  const tracks = video.srcObject ? video.srcObject.getAudioTracks() : [];
  flowact.audio = samples > lastSamples && !video.muted && !video.paused && tracks.some((k) => k.readyState === "live");
  lastFrames = flowact.frames; lastSamples = samples; lastTime = t;
  $("f-video").textContent = `${flowact.width}x${flowact.height}, ${flowact.frames} frames, ${flowact.fps} fps`;
  $("f-audio").textContent = flowact.audio ? "playing" : video.muted ? "muted" : "silent";
}

function send(cmd) {
  if (!ws || ws.readyState !== WebSocket.OPEN) return showError("not connected");
  cmd.id = `page-${++commandSeq}`;
  sentAt.set(cmd.id, performance.now());
  ws.send(JSON.stringify(cmd));
}

// the session ends on the server when this page's socket closes; `tell` also ends it by the API
async function stop(status = "ended", tell = true) {
  const s = session;
  session = null;
  clearInterval(statsTimer);
  if (ws) { ws.onclose = null; ws.close(); ws = null; }
  if (pc) { pc.close(); pc = null; }
  if (s && tell) await api(`/api/sessions/${s.id}`, { method: "DELETE" }).catch(() => {});
  flowact.audio = false;
  $("stage").classList.remove("live");
  setStatus(status);
}

// ---- the controls ----------------------------------------------------------------------------------

$("start").onclick = () => start($("picture").value);
$("stop").onclick = () => stop("ended");
$("speak").onclick = () => $("audio").value ? send({ cmd: "speak", audio: $("audio").value }) : showError("pick audio first");
$("interrupt").onclick = () => send({ cmd: "interrupt" });
for (const b of document.querySelectorAll("#states button")) b.onclick = () => send({ cmd: "state", state: b.dataset.state });
$("mic").onclick = () => {
  if (!mic) return showError("no microphone (allow it in the browser, then start again)");
  const track = mic.getAudioTracks()[0];
  track.enabled = !track.enabled;
  $("mic").textContent = track.enabled ? "Microphone on" : "Microphone off";
  $("mic").classList.toggle("on", track.enabled);
};
$("picture-file").onchange = async (e) => {
  const file = e.target.files[0];
  if (!file) return;
  try { await upload("picture", file); } catch (err) { showError(err.message); }
  e.target.value = "";
};
$("audio-file").onchange = async (e) => {
  const file = e.target.files[0];
  if (!file) return;
  try {
    const name = await upload("audio", file);
    if (session) send({ cmd: "speak", audio: name });
  } catch (err) { showError(err.message); }
  e.target.value = "";
};

// ---- by itself: ?session=ID, or ?image=NAME&say=NAME&autoplay=1 --------------------------------------------

async function main() {
  setStatus("idle");
  await loadMedia();
  const say = params.get("say");
  if (params.get("session")) {
    setStatus("starting");
    try { await watch(await api(`/api/sessions/${encodeURIComponent(params.get("session"))}`)); }
    catch (e) { showError(e.message); setStatus("error"); }
  } else if (params.get("autoplay") === "1" && params.get("image")) {
    await start(params.get("image"));
  }
  if (say && session) {  // speak once the first frames are here
    const t0 = performance.now();
    while (session && flowact.frames < 5 && performance.now() - t0 < 20000) await new Promise((r) => setTimeout(r, 100));
    if (session) send({ cmd: "speak", audio: say });
  }
}
main();
