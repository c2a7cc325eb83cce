// msa-edge live demo: camera + microphone -> MediaRecorder WebM chunks -> WebSocket /ws;
// each window message is drawn on the chart and its text added to the transcript.
"use strict";
const $ = (id) => document.getElementById(id);
const GATE_COLORS = { text: "#1f77b4", audio: "#2ca02c", vision: "#d62728" };
window.msaWindows = [];     // every window message, for tests and the console
window.msaErrors = [];      // every error message shown
window.msaChartPoints = 0;  // points drawn on the chart
let ws = null, recorder = null, media = null;

function status(text, error) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
  if (error) window.msaErrors.push(text);
}

function pickType() {
  const types = ["video/webm;codecs=vp8,opus", "video/webm;codecs=vp9,opus", "video/webm"];
  return types.find((t) => window.MediaRecorder && MediaRecorder.isTypeSupported(t)) || "";
}

async function start() {
  $("start").disabled = true;
  try {
    media = await navigator.mediaDevices.getUserMedia({ video: { width: 320, height: 240 }, audio: true });
  } catch (err) {
    status("No camera or microphone: " + err.name + " (" + err.message + "). Allow them for this page and press Start again.", true);
    $("start").disabled = false;
    return;
  }
  $("preview").srcObject = media;
  const token = new URLSearchParams(location.search).get("token");
  const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws" +
    (token ? "?token=" + encodeURIComponent(token) : "");
  ws = new WebSocket(url);
  ws.onopen = () => ws.send(JSON.stringify({ type: "start", format: "webm" }));
  ws.onmessage = (event) => onMessage(JSON.parse(event.data));
  ws.onclose = (event) => {
    if (recorder && recorder.state !== "inactive") recorder.stop();
    if (!window.msaErrors.length && event.code !== 1000) status("Connection closed (" + event.code + ").", true);
    $("start").disabled = false; $("stop").disabled = true;
  };
}

function record() {
  recorder = new MediaRecorder(media, { mimeType: pickType() });
  recorder.ondataavailable = (e) => { if (e.data.size && ws.readyState === 1) ws.send(e.data); };
  recorder.onstop = () => { if (ws.readyState === 1) ws.send(JSON.stringify({ type: "end" })); };
  recorder.start(500);  // a chunk every 0.5 s
  $("stop").disabled = false;
}

function onMessage(msg) {
  if (msg.type === "ready") {
    status("Streaming: windows of " + msg.window + " s every " + msg.hop + " s (" + msg.modalities.join(", ") +
      (msg.asr ? ", live ASR" : "") + ").");
    record();
  } else if (msg.type === "window") {
    window.msaWindows.push(msg);
    $("latency").textContent = Math.round(msg.latency_ms);
    $("lag").textContent = msg.lag_ms === null ? "-" : Math.round(msg.lag_ms);
    $("count").textContent = window.msaWindows.length;
    $("dropped").textContent = msg.dropped;
    if (msg.text) {
      const line = "[" + msg.start.toFixed(1) + "-" + msg.end.toFixed(1) + " s] " + msg.text.trim() + "\n";
      $("transcript").textContent += line;
    }
    draw();
  } else if (msg.type === "error") {
    status("Session ended by the server: " + msg.message, true);
  } else if (msg.type === "done") {
    status("Done: " + msg.windows + " windows.");
  }
}

function draw() {
  const c = $("chart"), g = c.getContext("2d"), W = c.width, H = c.height, pad = 24;
  g.clearRect(0, 0, W, H);
  g.strokeStyle = "#ddd"; g.fillStyle = "#888"; g.font = "11px sans-serif";
  for (const v of [-3, 0, 3]) {
    const y = pad + (3 - v) / 6 * (H - 2 * pad);
    g.beginPath(); g.moveTo(pad, y); g.lineTo(W - 4, y); g.stroke(); g.fillText(String(v), 2, y + 4);
  }
  const wins = window.msaWindows.slice(-60);
  if (!wins.length) return;
  const t0 = wins[0].end, t1 = Math.max(wins[wins.length - 1].end, t0 + 1);
  const x = (t) => pad + (t - t0) / (t1 - t0) * (W - pad - 8);
  const line = (color, value, width) => {
    g.strokeStyle = color; g.lineWidth = width; g.beginPath();
    let first = true;
    for (const w of wins) {
      const v = value(w);
      if (v === null || v === undefined) continue;
      const px = x(w.end), py = pad + (3 - v) / 6 * (H - 2 * pad);
      if (first) { g.moveTo(px, py); first = false; } else { g.lineTo(px, py); }
      g.fillStyle = color; g.fillRect(px - 2, py - 2, 4, 4);
    }
    g.stroke();
  };
  for (const [mod, color] of Object.entries(GATE_COLORS)) {  // gates (0..1) drawn on 0..3
    line(color, (w) => (w.gates && w.gates[mod] !== undefined ? 3 * w.gates[mod] : null), 1);
  }
  line("#000", (w) => w.score, 2.5);
  window.msaChartPoints = wins.length;
}

$("start").onclick = start;
$("stop").onclick = () => { if (recorder && recorder.state !== "inactive") recorder.stop(); $("stop").disabled = true; };
if (new URLSearchParams(location.search).get("autostart")) start();
