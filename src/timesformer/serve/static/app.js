// The page: choose or drop a video; it plays here while the server scores it.
"use strict";

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "timesformer-token";
let server = { clip_seconds: 8, max_upload_mb: 200 };
let pendingFile = null;

function authHeaders() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { Authorization: "Bearer " + token } : {};
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// POST the file; JSON or a Blob back, or an ApiError carrying the server's {"error": ...}.
async function post(route, file, wantBlob = false) {
  const body = new FormData();
  body.append("file", file, file.name);
  let response;
  try {
    response = await fetch(route, { method: "POST", body, headers: authHeaders() });
  } catch (err) {
    throw new ApiError(0, "cannot reach the server (" + err.message + ")");
  }
  if (!response.ok) {
    let message = response.status + " " + response.statusText;
    try {
      message = (await response.json()).error || message;
    } catch (_) { /* not JSON: keep the status line */ }
    throw new ApiError(response.status, message);
  }
  return wantBlob ? response.blob() : response.json();
}

function drawBars(prediction) {
  const list = $("bars");
  list.replaceChildren();
  $("bars-title").textContent = "Top " + prediction.topk_class.length;
  prediction.topk_class.forEach((cls, i) => {
    const score = prediction.topk_scores[i];
    const name = prediction.topk_label ? prediction.topk_label[i] : "class " + cls;
    const item = document.createElement("li");
    item.className = "bar";
    const label = document.createElement("span");
    label.className = "label";
    label.textContent = name;
    label.title = name + " (class " + cls + ")";
    const track = document.createElement("span");
    track.className = "track";
    const fill = document.createElement("span");
    fill.className = "fill";
    fill.style.display = "block";
    fill.style.width = (100 * score).toFixed(1) + "%";
    track.append(fill);
    const value = document.createElement("span");
    value.className = "score";
    value.textContent = (100 * score).toFixed(1) + "%";
    item.append(label, track, value);
    list.append(item);
  });
}

function hue(classId) {
  return (classId * 137.508) % 360; // golden angle: neighbouring ids get distant colours
}

function drawTimeline(result) {
  const strip = $("timeline");
  strip.replaceChildren();
  for (const w of result.timeline) {
    const segment = document.createElement("div");
    segment.className = "segment";
    const cls = w.topk_class[0];
    const name = w.topk_label ? w.topk_label[0] : "class " + cls;
    segment.style.background = "hsl(" + hue(cls) + " 55% 45%)";
    segment.textContent = name;
    segment.title = w.start_s.toFixed(1) + "–" + w.end_s.toFixed(1) + " s: " + name + " " + (100 * w.topk_scores[0]).toFixed(1) + "%";
    segment.addEventListener("click", () => { $("player").currentTime = w.start_s; });
    strip.append(segment);
  }
  $("timeline-caption").textContent =
    result.timeline.length + " windows of " + result.window.toFixed(1) + " s (click one to jump there)";
  $("timeline-box").hidden = false;
}

function videoDuration(url) {
  return new Promise((resolve) => {
    const probe = document.createElement("video");
    probe.preload = "metadata";
    probe.onloadedmetadata = () => resolve(probe.duration);
    probe.onerror = () => resolve(NaN); // the browser may not play it; the server still can
    probe.src = url;
  });
}

async function analyse(file) {
  clearError();
  pendingFile = file;
  if (file.size > server.max_upload_mb * 1048576) {
    showError(file.name + ": " + (file.size / 1048576).toFixed(1) + " MB is over the server's limit of " + server.max_upload_mb + " MB");
    return;
  }
  const url = URL.createObjectURL(file);
  $("status").textContent = "Scoring " + file.name + "…";
  let prediction;
  try {
    prediction = await post("/predict?top_k=5", file);
  } catch (err) {
    $("status").textContent = "";
    if (err.status === 401) {
      $("token-box").hidden = false;
      $("token").focus();
    }
    showError(err.message);
    URL.revokeObjectURL(url);
    return;
  }
  $("results").hidden = false;
  $("timeline-box").hidden = true;
  $("player").src = url;
  $("player").play().catch(() => {});
  $("video-name").textContent = file.name;
  drawBars(prediction);
  $("status").textContent = "Top class: " + (prediction.topk_label ? prediction.topk_label[0] : "class " + prediction.topk_class[0]) +
    " (" + prediction.seconds.toFixed(2) + " s on the server)";

  $("overlay").removeAttribute("src");
  $("overlay-caption").textContent = "computing the attention maps…";
  try {
    const png = await post("/explain", file, true);
    $("overlay").src = URL.createObjectURL(png);
    $("overlay-caption").textContent = "where the model looked (attention rollout over the centre crop)";
  } catch (err) {
    $("overlay-caption").textContent = "no attention maps: " + err.message;
  }

  const duration = await videoDuration(url);
  if (duration > 1.5 * server.clip_seconds) {
    const window = server.clip_seconds;
    try {
      drawTimeline(await post("/predict?top_k=1&window=" + window + "&stride=" + window, file));
    } catch (err) {
      $("timeline-caption").textContent = "no timeline: " + err.message;
      $("timeline-box").hidden = false;
    }
  }
}

function setUp() {
  const input = $("file-input");
  const drop = $("drop");
  input.addEventListener("change", () => { if (input.files.length) analyse(input.files[0]); });
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files.length) analyse(e.dataTransfer.files[0]);
  });
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") input.click(); });
  $("token-save").addEventListener("click", () => {
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    $("token-box").hidden = true;
    if (pendingFile) analyse(pendingFile);
  });
  fetch("/healthz")
    .then((r) => r.json())
    .then((info) => {
      server = info;
      $("model").textContent = info.model + " · " + info.num_classes + " classes · clip " + info.clip_seconds.toFixed(1) + " s";
      $("limit").textContent = "up to " + info.max_upload_mb + " MB";
    })
    .catch(() => { $("model").textContent = "server not reachable"; });
}

setUp();
