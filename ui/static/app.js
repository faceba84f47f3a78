// Switchboard's page: a chat with the agent over the HTTP API (ui/server.py). No build step,
// no dependencies. Every turn — streamed live or read back from the session's history — is drawn
// by the same renderTurn(), from the stored messages, artifacts and calls.
"use strict";

const $ = (sel, el = document) => el.querySelector(sel);
const PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6",
  "#9a6324"];
const state = {
  session: null,
  token: localStorage.getItem("switchboard.token") || "",
  auth: false,
  file: null,
  region: null,
  busy: false,
  urls: new Map(), // sha256 -> object URL
  json: new Map(), // sha256 -> parsed JSON
};

class ApiError extends Error {
  constructor(status, detail) {
    super(`${status}: ${detail}`);
    this.status = status;
    this.detail = detail;
  }
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== null && v !== undefined && v !== false) node.setAttribute(k, v);
  }
  for (const c of children) if (c) node.append(c);
  return node;
}

// -- the API --------------------------------------------------------------------------------
function authHeaders() {
  return state.token ? { Authorization: `Bearer ${state.token}` } : {};
}

async function api(path, opts = {}) {
  const r = await fetch(path, { ...opts, headers: { ...authHeaders(), ...(opts.headers || {}) } });
  if (!r.ok) {
    let detail = r.statusText;
    try {
      detail = (await r.json()).detail;
    } catch (_) { /* not JSON */ }
    if (r.status === 401) showToken(true);
    throw new ApiError(r.status, typeof detail === "string" ? detail : JSON.stringify(detail));
  }
  return r;
}

async function artifactURL(sha) {
  if (!state.urls.has(sha)) {
    const blob = await (await api(`/api/artifacts/${sha}`)).blob();
    state.urls.set(sha, URL.createObjectURL(blob));
  }
  return state.urls.get(sha);
}

async function artifactJSON(sha) {
  if (!state.json.has(sha)) state.json.set(sha, await (await api(`/api/artifacts/${sha}`)).json());
  return state.json.get(sha);
}

function loadImage(url) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error(`could not load ${url}`));
    img.src = url;
  });
}

// -- sessions -------------------------------------------------------------------------------
async function loadSessions() {
  const list = $("#sessions");
  let sessions;
  try {
    sessions = await (await api("/api/sessions")).json();
  } catch (err) {
    list.replaceChildren(el("li", { class: "error", text: err.detail || err.message }));
    return;
  }
  list.replaceChildren(...sessions.map((s) => el("li", {
    class: s.id === state.session ? "session active" : "session",
    "data-session": s.id,
    title: `${s.turns} turn(s), last ${new Date(s.updated_at).toLocaleString()}`,
    onclick: () => openSession(s.id),
  }, el("span", { class: "title", text: s.title || "(untitled)" }),
  el("span", { class: "meta", text: `${s.turns} turn${s.turns === 1 ? "" : "s"}` }))));
}

async function openSession(id) {
  state.session = id;
  history.replaceState(null, "", id ? `#session=${id}` : "#");
  const box = $("#messages");
  box.replaceChildren();
  for (const li of document.querySelectorAll("#sessions li")) {
    li.classList.toggle("active", li.dataset.session === id);
  }
  if (!id) {
    box.append(el("p", { id: "empty", class: "hint", text: "A new session: attach an image or a video, and ask." }));
    return;
  }
  try {
    const session = await (await api(`/api/sessions/${id}`)).json();
    for (const turn of session.turns) box.append(...renderTurn(turn));
    box.scrollTop = box.scrollHeight;
  } catch (err) {
    box.append(el("p", { class: "error", text: `Could not open the session: ${err.detail || err.message}` }));
    if (err.status === 404) {
      state.session = null;
      history.replaceState(null, "", "#");
    }
  }
}

// -- drawing turns --------------------------------------------------------------------------
function artifactsOf(message, kind) {
  return message ? message.artifacts.filter((a) => a.kind === kind) : [];
}

function describeRegion(region) {
  if (!region) return "";
  if (region.box) return `box (${region.box.map((v) => Math.round(v)).join(", ")})`;
  if (region.point) return `click (${region.point.map((v) => Math.round(v)).join(", ")})`;
  return "sketch";
}

/** A turn's user bubble and assistant bubble. `turn`: {id, status, error, messages, calls}. */
function renderTurn(turn) {
  const user = turn.messages.find((m) => m.role === "user");
  const reply = turn.messages.find((m) => m.role === "assistant");
  const input = user && user.artifacts.find((a) => a.kind === "image" || a.kind === "video");

  const userBubble = el("article", { class: "bubble user", "data-turn": turn.id },
    el("p", { class: "text", text: user ? user.text : "" }));
  if (input) userBubble.append(thumbnail(input));
  if (user && user.region) {
    userBubble.append(el("p", { class: "region", text: `region: ${describeRegion(user.region)}` }));
  }

  const status = turn.status || "done";
  const bubble = el("article", { class: `bubble assistant ${status}`, "data-turn": turn.id,
    "data-status": status });
  bubble.append(el("p", { class: "text reply", text: reply ? reply.text : (turn.error || "…") }));
  if (status === "failed" && turn.error) bubble.append(el("p", { class: "error", text: turn.error }));
  const results = el("div", { class: "results" });
  bubble.append(results);
  drawResults(results, input, reply).catch((err) => results.append(
    el("p", { class: "error", text: `Could not draw the results: ${err.message}` })));
  if (turn.calls && turn.calls.length) bubble.append(traceTable(turn.calls));
  const files = [...(user ? user.artifacts : []), ...(reply ? reply.artifacts : [])];
  if (files.length) bubble.append(downloads(files));
  return [userBubble, bubble];
}

function thumbnail(artifact) {
  const node = artifact.kind === "video"
    ? el("video", { class: "thumb", muted: "", playsinline: "" })
    : el("img", { class: "thumb", alt: "the attached image" });
  artifactURL(artifact.sha256).then((url) => { node.src = url; }).catch(() => {});
  return node;
}

async function drawResults(box, input, reply) {
  if (!reply) return;
  const masks = artifactsOf(reply, "mask");
  const edited = artifactsOf(reply, "edited");
  const generated = artifactsOf(reply, "generated");
  const resultsFile = artifactsOf(reply, "results")[0];
  const found = resultsFile ? await artifactJSON(resultsFile.sha256) : { boxes: [], tracks: [] };
  if (input && input.kind === "image" && (masks.length || found.boxes.length)) {
    box.append(await overlayView(input, masks, found.boxes));
  }
  if (input && input.kind === "image" && edited.length) {
    box.append(await beforeAfter(input, edited));
  }
  for (const g of generated.concat(input ? [] : edited)) {
    box.append(el("figure", { class: "generated" },
      el("img", { src: await artifactURL(g.sha256), alt: "a generated image" }),
      el("figcaption", { text: "generated" })));
  }
  if (input && input.kind === "video" && found.tracks.length) {
    box.append(await trackView(input, found.tracks, found.fps || 6));
  }
}

/** The input image with the masks (each toggled by its checkbox) and labelled boxes on top. */
async function overlayView(input, masks, boxes) {
  const base = await loadImage(await artifactURL(input.sha256));
  const w = base.naturalWidth;
  const h = base.naturalHeight;
  const canvas = el("canvas", { class: "overlay", width: w, height: h });
  const layers = [];
  for (const [i, m] of masks.entries()) {
    const img = await loadImage(await artifactURL(m.sha256));
    const layer = document.createElement("canvas");
    layer.width = w;
    layer.height = h;
    const ctx = layer.getContext("2d");
    ctx.drawImage(img, 0, 0, w, h);
    const px = ctx.getImageData(0, 0, w, h);
    const [r, g, b] = hexRGB(PALETTE[i % PALETTE.length]);
    for (let p = 0; p < px.data.length; p += 4) {
      const on = px.data[p] > 127;
      px.data[p] = r;
      px.data[p + 1] = g;
      px.data[p + 2] = b;
      px.data[p + 3] = on ? 120 : 0;
    }
    ctx.putImageData(px, 0, 0);
    layers.push({ canvas: layer, visible: true });
  }
  const redraw = () => {
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, w, h);
    let shown = 0;
    for (const layer of layers) {
      if (layer.visible) {
        ctx.drawImage(layer.canvas, 0, 0);
        shown += 1;
      }
    }
    boxes.forEach((b, i) => drawBox(ctx, b.xyxy, `${b.label} ${(b.score * 100).toFixed(0)}%`,
      PALETTE[(i + masks.length) % PALETTE.length], w));
    canvas.dataset.masks = String(shown);
    canvas.dataset.boxes = String(boxes.length);
  };
  redraw();
  const toggles = el("div", { class: "toggles" });
  layers.forEach((layer, i) => {
    const cb = el("input", { type: "checkbox", class: "mask-toggle", checked: "",
      "data-mask": i, onchange: (e) => { layer.visible = e.target.checked; redraw(); } });
    toggles.append(el("label", { style: `--swatch:${PALETTE[i % PALETTE.length]}` }, cb,
      ` mask ${i + 1}`));
  });
  return el("figure", { class: "overlay-view" },
    el("div", { class: "media-wrap" }, el("img", { src: base.src, alt: "the input image" }), canvas),
    masks.length ? toggles : null,
    el("figcaption", { text: [masks.length && `${masks.length} mask(s)`,
      boxes.length && `${boxes.length} box(es)`].filter(Boolean).join(", ") }));
}

function hexRGB(hex) {
  const n = parseInt(hex.slice(1), 16);
  return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
}

function drawBox(ctx, xyxy, label, color, width) {
  const [x1, y1, x2, y2] = xyxy;
  const line = Math.max(1, Math.round(width / 200));
  ctx.lineWidth = 2 * line;
  ctx.strokeStyle = color;
  ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
  if (!label) return;
  const size = Math.max(10, Math.round(width / 28));
  ctx.font = `${size}px sans-serif`;
  const tw = ctx.measureText(label).width + 6;
  const ty = y1 - size - 4 >= 0 ? y1 - size - 4 : y1;
  ctx.fillStyle = color;
  ctx.fillRect(x1, ty, tw, size + 4);
  ctx.fillStyle = "#fff";
  ctx.fillText(label, x1 + 3, ty + size);
}

/** Before and after an edit: the edited image over the input, revealed by a slider; with
 * several edits in one turn, each step is listed below. */
async function beforeAfter(input, edited) {
  const before = await artifactURL(input.sha256);
  const last = edited[edited.length - 1];
  const after = await artifactURL(last.sha256);
  const top = el("div", { class: "after" }, el("img", { src: after, alt: "after the edit" }));
  const slider = el("input", { type: "range", min: 0, max: 100, value: 50, class: "split",
    "aria-label": "before / after",
    oninput: (e) => { top.style.clipPath = `inset(0 0 0 ${e.target.value}%)`; } });
  top.style.clipPath = "inset(0 0 0 50%)";
  const view = el("figure", { class: "before-after", "data-before": input.sha256,
    "data-after": last.sha256 },
  el("div", { class: "media-wrap" }, el("img", { class: "before", src: before, alt: "before the edit" }), top),
  slider,
  el("figcaption", {}, el("span", { text: "before" }), el("span", { text: "after" })));
  if (edited.length > 1) {
    const steps = el("div", { class: "steps" });
    for (const [i, e] of edited.entries()) {
      steps.append(el("img", { src: await artifactURL(e.sha256), alt: `edit ${i + 1}`, title: `edit ${i + 1}` }));
    }
    view.append(steps);
  }
  return view;
}

/** The video with every track's box (and its path so far) drawn on the frame on screen. */
async function trackView(input, tracks, fps) {
  const video = el("video", { src: await artifactURL(input.sha256), controls: "", muted: "",
    loop: "", playsinline: "", preload: "auto" });
  video.muted = true;
  const canvas = el("canvas", { class: "overlay tracks" });
  const byTrack = tracks.map((t) => new Map(t.frames.map((f, i) => [f, t.xyxy[i]])));
  const lastFrame = Math.max(...tracks.flatMap((t) => t.frames));
  const draw = () => {
    if (!video.videoWidth) return;
    if (canvas.width !== video.videoWidth) {
      canvas.width = video.videoWidth;
      canvas.height = video.videoHeight;
    }
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    const frame = Math.min(lastFrame, Math.floor(video.currentTime * fps + 1e-3));
    let drawn = 0;
    tracks.forEach((t, i) => {
      const color = PALETTE[i % PALETTE.length];
      const path = t.frames.filter((f) => f <= frame).map((f) => byTrack[i].get(f));
      if (path.length > 1) {
        ctx.beginPath();
        ctx.strokeStyle = color;
        ctx.lineWidth = 1;
        path.forEach(([x1, y1, x2, y2], k) => {
          const [cx, cy] = [(x1 + x2) / 2, (y1 + y2) / 2];
          if (k === 0) ctx.moveTo(cx, cy); else ctx.lineTo(cx, cy);
        });
        ctx.stroke();
      }
      const b = byTrack[i].get(frame);
      if (b) {
        drawBox(ctx, b, `#${t.track_id} ${t.label}`, color, canvas.width);
        drawn += 1;
      }
    });
    canvas.dataset.frame = String(frame);
    canvas.dataset.boxes = String(drawn);
  };
  const loop = () => {
    draw();
    if (!video.paused && !video.ended) requestAnimationFrame(loop);
  };
  for (const ev of ["loadeddata", "seeked", "timeupdate", "pause"]) video.addEventListener(ev, draw);
  video.addEventListener("play", () => requestAnimationFrame(loop));
  const legend = el("ul", { class: "legend" }, ...tracks.map((t, i) => el("li",
    { style: `--swatch:${PALETTE[i % PALETTE.length]}` },
    `#${t.track_id} ${t.label}: frames ${t.frames[0]}–${t.frames[t.frames.length - 1]}`)));
  return el("figure", { class: "track-view" }, el("div", { class: "media-wrap" }, video, canvas),
    legend, el("figcaption", { text: `${tracks.length} track(s) at ${fps} fps` }));
}

function traceTable(calls) {
  const rows = calls.map((c, i) => traceRow(i, c));
  return el("details", { class: "trace", open: "" },
    el("summary", { text: `${calls.length} call(s), ${calls.reduce((s, c) => s + (c.seconds || 0), 0).toFixed(2)} s` }),
    el("table", {}, el("thead", {}, el("tr", {}, ...["#", "specialist", "arguments", "time",
      "status", "signal"].map((h) => el("th", { text: h })))), el("tbody", {}, ...rows)));
}

/** A call's arguments as JSON, with a mask (COCO RLE) shown as its size and area. */
function showArgs(args) {
  return JSON.stringify(args, (key, value) => {
    if (value && Array.isArray(value.size) && Array.isArray(value.counts)) {
      const area = value.counts.reduce((sum, n, i) => sum + (i % 2 ? n : 0), 0);
      return `<mask ${value.size[1]}×${value.size[0]}, ${area} px>`;
    }
    return value;
  });
}

function traceRow(i, c) {
  return el("tr", { class: `call ${c.status || "running"}`, title: c.error || c.observation || "" },
    el("td", { text: String(i + 1) }),
    el("td", { class: "tool", text: c.tool }),
    el("td", {}, el("code", { text: showArgs(c.args) })),
    el("td", { text: c.seconds === undefined ? "…" : `${Number(c.seconds).toFixed(2)} s` }),
    el("td", { text: c.status || "running" }),
    el("td", { text: c.with_signal ? "yes" : "no" }));
}

function downloads(files) {
  const names = { image: "input.png", video: "input.mp4", mask: "mask", edited: "edited",
    generated: "generated", results: "results.json" };
  const counts = {};
  return el("p", { class: "downloads" }, "Download: ", ...files.map((a) => {
    counts[a.kind] = (counts[a.kind] || 0) + 1;
    const ext = a.media_type === "application/json" ? ".json" : a.media_type === "image/png" ? ".png" : "";
    let name = names[a.kind] || a.kind;
    if (!name.includes(".")) name = `${name}-${counts[a.kind]}${ext}`;
    return el("a", { href: `/api/artifacts/${a.sha256}`, download: name, class: "download",
      onclick: async (e) => {
        e.preventDefault();
        const link = el("a", { href: await artifactURL(a.sha256), download: name });
        link.click();
      } }, name);
  }));
}

// -- the composer ---------------------------------------------------------------------------
function setError(text) {
  const p = $("#composer-error");
  p.textContent = text || "";
  p.hidden = !text;
}

function setFile(file) {
  if (file && !/^(image|video)\//.test(file.type)) {
    setError(`${file.name} is not an image or a video (${file.type || "unknown type"}).`);
    return;
  }
  setError("");
  state.file = file;
  clearRegion();
  const img = $("#stage-image");
  const video = $("#stage-video");
  $("#stage").hidden = !file;
  $("#drop-hint").hidden = !!file;
  if (!file) return;
  const url = URL.createObjectURL(file);
  const isVideo = file.type.startsWith("video/") && file.type !== "image/gif";
  img.hidden = isVideo;
  video.hidden = !isVideo;
  if (isVideo) {
    video.onloadeddata = () => sizeCanvas(video.videoWidth, video.videoHeight);
    video.src = url;
  } else {
    img.onload = () => sizeCanvas(img.naturalWidth, img.naturalHeight);
    img.onerror = () => setError(`${file.name} could not be decoded as an image.`);
    img.src = url;
  }
}

function sizeCanvas(w, h) {
  const canvas = $("#stage-canvas");
  canvas.width = w;
  canvas.height = h;
  canvas.dataset.ready = "1";
  drawRegion();
}

function clearRegion() {
  state.region = null;
  state.sketch = null;
  $("#region-label").textContent = "";
  drawRegion();
}

function tool() {
  return document.querySelector("input[name=tool]:checked").value;
}

function canvasPoint(e) {
  const canvas = $("#stage-canvas");
  const rect = canvas.getBoundingClientRect();
  const x = ((e.clientX - rect.left) / rect.width) * canvas.width;
  const y = ((e.clientY - rect.top) / rect.height) * canvas.height;
  return [Math.round(Math.min(canvas.width, Math.max(0, x))),
    Math.round(Math.min(canvas.height, Math.max(0, y)))];
}

function drawRegion(preview) {
  const canvas = $("#stage-canvas");
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const line = Math.max(1, Math.round(canvas.width / 150));
  ctx.lineWidth = line;
  ctx.strokeStyle = "#ffd400";
  ctx.fillStyle = "rgba(255, 212, 0, 0.35)";
  const r = preview || state.region;
  if (!r) return;
  if (r.point) {
    ctx.beginPath();
    ctx.arc(r.point[0], r.point[1], 3 * line, 0, 2 * Math.PI);
    ctx.fill();
    ctx.stroke();
  } else if (r.box) {
    const [x1, y1, x2, y2] = r.box;
    ctx.fillRect(x1, y1, x2 - x1, y2 - y1);
    ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
  } else if (r.path) {
    ctx.beginPath();
    r.path.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
    ctx.closePath();
    ctx.fill();
    ctx.stroke();
  }
}

/** The free-hand outline as a mask at the image's size, in COCO RLE (column-major runs that
 * start with background) — the API's region mask, a few hundred numbers instead of H×W. */
function sketchRLE(path, w, h) {
  const c = document.createElement("canvas");
  c.width = w;
  c.height = h;
  const ctx = c.getContext("2d");
  ctx.fillStyle = "#fff";
  ctx.beginPath();
  path.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
  ctx.closePath();
  ctx.fill();
  const px = ctx.getImageData(0, 0, w, h).data;
  const counts = [];
  let run = 0;
  let current = 0;
  for (let x = 0; x < w; x++) {
    for (let y = 0; y < h; y++) {
      const v = px[(y * w + x) * 4 + 3] > 127 ? 1 : 0;
      if (v !== current) {
        counts.push(run);
        run = 0;
        current = v;
      }
      run += 1;
    }
  }
  counts.push(run);
  return { size: [h, w], counts };
}

function setupDrawing() {
  const canvas = $("#stage-canvas");
  let start = null;
  let path = null;
  canvas.addEventListener("pointerdown", (e) => {
    const t = tool();
    if (t === "none") return;
    canvas.setPointerCapture(e.pointerId);
    const p = canvasPoint(e);
    if (t === "point") {
      state.region = { point: p };
      $("#region-label").textContent = describeRegion(state.region);
      drawRegion();
    } else if (t === "box") {
      start = p;
    } else if (t === "sketch") {
      path = [p];
    }
  });
  canvas.addEventListener("pointermove", (e) => {
    const p = canvasPoint(e);
    if (start) drawRegion({ box: [Math.min(start[0], p[0]), Math.min(start[1], p[1]),
      Math.max(start[0], p[0]), Math.max(start[1], p[1])] });
    else if (path) {
      path.push(p);
      drawRegion({ path });
    }
  });
  canvas.addEventListener("pointerup", (e) => {
    const p = canvasPoint(e);
    if (start) {
      const box = [Math.min(start[0], p[0]), Math.min(start[1], p[1]),
        Math.max(start[0], p[0]), Math.max(start[1], p[1])];
      start = null;
      if (box[2] - box[0] >= 2 && box[3] - box[1] >= 2) {
        state.region = { box };
        $("#region-label").textContent = describeRegion(state.region);
      }
      drawRegion();
    } else if (path) {
      path.push(p);
      if (path.length >= 3) {
        state.region = { path, mask: true };
        $("#region-label").textContent = "sketch";
      }
      path = null;
      drawRegion();
    }
  });
}

function regionJSON() {
  const r = state.region;
  if (!r) return null;
  if (r.path) {
    const canvas = $("#stage-canvas");
    return JSON.stringify({ mask: sketchRLE(r.path, canvas.width, canvas.height) });
  }
  return JSON.stringify(r);
}

function setupDrop() {
  const drop = $("#drop");
  for (const ev of ["dragenter", "dragover"]) {
    drop.addEventListener(ev, (e) => {
      e.preventDefault();
      drop.classList.add("over");
    });
  }
  for (const ev of ["dragleave", "drop"]) {
    drop.addEventListener(ev, () => drop.classList.remove("over"));
  }
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    if (e.dataTransfer.files.length) setFile(e.dataTransfer.files[0]);
  });
  $("#file").addEventListener("change", (e) => setFile(e.target.files[0] || null));
  $("#clear-region").addEventListener("click", clearRegion);
  $("#remove-file").addEventListener("click", () => {
    $("#file").value = "";
    setFile(null);
  });
}

// -- sending a message, streamed ------------------------------------------------------------
async function send(e) {
  if (e) e.preventDefault();
  const text = $("#text").value.trim();
  if (!text || state.busy) return;
  state.busy = true;
  $("#send").disabled = true;
  setError("");
  const box = $("#messages");
  const empty = $("#empty");
  if (empty) empty.remove();
  const userBubble = el("article", { class: "bubble user pending" }, el("p", { class: "text", text }));
  if (state.file) {
    const thumb = state.file.type.startsWith("video/")
      ? el("video", { class: "thumb", src: URL.createObjectURL(state.file), muted: "" })
      : el("img", { class: "thumb", src: URL.createObjectURL(state.file), alt: "the attached image" });
    userBubble.append(thumb);
  }
  const live = el("article", { class: "bubble assistant streaming", "data-status": "streaming" },
    el("p", { class: "text reply", text: "…" }));
  const trace = el("tbody");
  live.append(el("details", { class: "trace", open: "" }, el("summary", { text: "working…" }),
    el("table", {}, trace)));
  box.append(userBubble, live);
  box.scrollTop = box.scrollHeight;
  try {
    if (!state.session) {
      state.session = (await (await api("/api/sessions", { method: "POST" })).json()).id;
      history.replaceState(null, "", `#session=${state.session}`);
    }
    const form = new FormData();
    form.append("text", text);
    if (state.file) form.append("file", state.file, state.file.name);
    const region = regionJSON();
    if (region) form.append("region", region);
    const r = await api(`/api/sessions/${state.session}/messages/stream`, { method: "POST", body: form });
    const turn = await readEvents(r, live, trace);
    const [u, a] = renderTurn(turn);
    userBubble.replaceWith(u);
    live.replaceWith(a);
    $("#text").value = "";
    clearRegion(); // the file stays attached for the next request on it
  } catch (err) {
    userBubble.remove();
    live.remove();
    setError(`Not sent: ${err.detail || err.message}`); // the text, file and region are kept
  } finally {
    state.busy = false;
    $("#send").disabled = false;
    box.scrollTop = box.scrollHeight;
    loadSessions();
  }
}

/** Read the SSE stream: show the route, each call and the reply as they come; return the
 * finished turn in the history's shape. */
async function readEvents(response, live, trace) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  const rows = new Map();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const chunk = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const data = chunk.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
      if (!data) continue;
      const ev = JSON.parse(data);
      if (ev.type === "route") {
        const what = ev.calls.length ? ev.calls.map((c) => c.tool).join(", ") : "a reply";
        $("summary", live).textContent = `routed to ${what} in ${ev.seconds.toFixed(2)} s`;
      } else if (ev.type === "call_started") {
        const row = traceRow(rows.size, { tool: ev.tool, args: ev.args });
        rows.set(`${ev.step}:${ev.index}`, row);
        trace.append(row);
      } else if (ev.type === "call_finished") {
        const row = traceRow(rows.size - 1, ev);
        const key = `${ev.step}:${ev.index}`;
        if (rows.has(key)) rows.get(key).replaceWith(row);
        rows.set(key, row);
      } else if (ev.type === "text") {
        $(".reply", live).textContent = ev.text;
      } else if (ev.type === "turn") {
        const t = ev.turn;
        return { id: t.turn, status: "done", messages: t.messages, calls: t.calls };
      } else if (ev.type === "error") {
        throw new ApiError(422, ev.detail);
      }
    }
  }
  throw new Error("the stream ended before the turn did");
}

// -- start ----------------------------------------------------------------------------------
function showToken(show) {
  $("#token-box").hidden = !show;
  $("#token").value = state.token;
}

async function start() {
  setupDrop();
  setupDrawing();
  $("#composer").addEventListener("submit", send);
  $("#text").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) send(e);
  });
  $("#new-session").addEventListener("click", () => openSession(null));
  $("#token").addEventListener("change", (e) => {
    state.token = e.target.value.trim();
    localStorage.setItem("switchboard.token", state.token);
    loadSessions();
  });
  try {
    const health = await (await fetch("/api/health")).json();
    state.auth = health.auth;
    showToken(health.auth);
    $("#status").textContent = `${health.tools.length} specialists: ${health.tools.join(", ")}`;
  } catch (err) {
    $("#status").textContent = `The server did not answer: ${err.message}`;
  }
  await loadSessions();
  const m = location.hash.match(/session=([0-9a-f]+)/);
  if (m) await openSession(m[1]);
}

start();
