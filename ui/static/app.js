// Switchboard's page: a chat with the agent over the HTTP API (ui/server.py). No build step,
// no dependencies. Every turn — streamed live or read back from the session's history — is drawn
// by the same renderTurn(), from the stored messages, artifacts and calls.
"use strict";

const $ = (sel, el = document) => el.querySelector(sel);
const PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6",
  "#9a6324"];
// Mask colours: for each mask the one farthest (in RGB) from the pixels under it.
const MASK_COLOURS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6",
  "#ffe119", "#bfef45", "#ffffff", "#000000", "#9a6324"];
const MIN_CONTRAST = 60;
const EXAMPLE = "Type a request first — for example “segment the red circle”.";
const state = {
  session: null,
  token: localStorage.getItem("switchboard.token") || "",
  auth: false,
  file: null, // the file attached, not yet sent
  current: null, // the session's current image or video (the server's), see setCurrent()
  region: null,
  busy: false,
  maxText: 4000, // the server's, from /api/health
  maxUpload: 50e6,
  urls: new Map(), // sha256 -> object URL
  json: new Map(), // sha256 -> parsed JSON
};

class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
    this.detail = detail;
  }
}

/** What to tell a person when a request failed: the server's sentence, or one of ours. */
function sayError(err) {
  if (err instanceof ApiError) return err.detail;
  if (err instanceof TypeError) return "The server could not be reached; check that it is running, then try again.";
  return err.message;
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
    let detail = null;
    try {
      detail = (await r.json()).detail;
    } catch (_) { /* not JSON */ }
    if (r.status === 401) showToken(true);
    if (typeof detail !== "string" || !detail) { // only the server's sentences are shown
      detail = r.status === 401 ? "The server needs an API token: enter it on the left."
        : `The server refused the request (${r.status} ${r.statusText}).`;
    }
    throw new ApiError(r.status, detail);
  }
  return r;
}

const fetching = new Map(); // sha256 -> the promise of its object URL, while it is fetched

/** An artifact's object URL, fetched once (calls made while it is fetched share the fetch). */
async function artifactURL(sha) {
  if (state.urls.has(sha)) return state.urls.get(sha);
  if (!fetching.has(sha)) {
    fetching.set(sha, (async () => {
      try {
        const blob = await (await api(`/api/artifacts/${sha}`)).blob();
        state.urls.set(sha, URL.createObjectURL(blob));
        return state.urls.get(sha);
      } finally {
        fetching.delete(sha);
      }
    })());
  }
  return fetching.get(sha);
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
/** The server's times are UTC without a zone (``2024-05-01T12:02:00``): read them as UTC. */
function utc(iso) {
  return new Date(/(Z|[+-]\d\d:?\d\d)$/.test(iso) ? iso : `${iso}Z`);
}

function clock(date) {
  const hm = `${String(date.getHours()).padStart(2, "0")}:${String(date.getMinutes()).padStart(2, "0")}`;
  if (date.toDateString() === new Date().toDateString()) return hm;
  return `${date.toLocaleDateString(undefined, { day: "numeric", month: "short" })} ${hm}`;
}

/** A session's name: the one a person gave it, else its first request and when it began. */
function sessionTitle(s) {
  if (s.named) return s.title;
  return `${s.title || "New session"} · ${clock(utc(s.created_at))}`;
}

async function loadSessions() {
  const list = $("#sessions");
  let sessions;
  try {
    sessions = await (await api("/api/sessions")).json();
  } catch (err) {
    list.replaceChildren(el("li", { class: "error", text: sayError(err) }));
    return;
  }
  const titles = distinctTitles(sessions);
  list.replaceChildren(...sessions.map((s, i) => sessionItem(s, titles[i])));
}

/** Every session's title, no two alike: the same first request begun in the same minute gets
 * the seconds too, and a name given twice a number. */
function distinctTitles(sessions) {
  const count = (list) => list.reduce((m, t) => m.set(t, (m.get(t) || 0) + 1), new Map());
  let titles = sessions.map((s) => sessionTitle(s));
  const seen = count(titles);
  titles = titles.map((t, i) => {
    const s = sessions[i];
    if (seen.get(t) < 2 || s.named) return t;
    const d = utc(s.created_at);
    return `${t}:${String(d.getSeconds()).padStart(2, "0")}`;
  });
  const again = count(titles);
  const nth = new Map();
  const out = [...titles];
  for (let i = titles.length - 1; i >= 0; i--) { // numbered oldest first (the list is newest first)
    const t = titles[i];
    if (again.get(t) < 2) continue;
    nth.set(t, (nth.get(t) || 0) + 1);
    if (nth.get(t) > 1) out[i] = `${t} (${nth.get(t)})`;
  }
  return out;
}

function sessionItem(s, title) {
  const li = el("li", {
    class: s.id === state.session ? "session active" : "session",
    "data-session": s.id,
    title: `${title}: ${s.turns} turn(s), last ${utc(s.updated_at).toLocaleString()}`,
    onclick: () => openSession(s.id),
  });
  const stop = (fn) => (e) => { e.stopPropagation(); fn(); };
  // the words shrink (…), the time stays: two sessions with the same request stay told apart
  const words = s.named ? title : (s.title || "New session");
  const when = !s.named && title.startsWith(`${words} · `) ? title.slice(words.length) : "";
  const show = () => li.replaceChildren(
    el("div", { class: "session-row" },
      el("span", { class: "title" }, el("span", { class: "words", text: when ? words : title }),
        when ? el("span", { class: "when", text: when }) : null),
      el("button", { type: "button", class: "icon rename", title: "Rename this session",
        "aria-label": "Rename this session", onclick: stop(rename) }, "✎"),
      el("button", { type: "button", class: "icon delete", title: "Delete this session",
        "aria-label": "Delete this session", onclick: stop(askDelete) }, trashIcon())),
    el("span", { class: "meta", text: `${s.turns} turn${s.turns === 1 ? "" : "s"}` }));
  const fail = (err) => li.append(el("span", { class: "error", text: sayError(err) }));

  function rename() {
    const input = el("input", { class: "rename-input", type: "text", maxlength: 120,
      "aria-label": "New name of the session", value: s.title || "" });
    let done = false;
    const save = async () => {
      if (done) return;
      done = true;
      const name = input.value.trim();
      if (!name || name === s.title) { show(); return; } // unchanged: nothing to save
      try {
        await api(`/api/sessions/${s.id}`, { method: "PATCH", body: JSON.stringify({ title: name }),
          headers: { "Content-Type": "application/json" } });
        await loadSessions();
      } catch (err) {
        show();
        fail(err);
      }
    };
    input.addEventListener("click", (e) => e.stopPropagation());
    input.addEventListener("keydown", (e) => {
      e.stopPropagation();
      if (e.key === "Enter") save();
      else if (e.key === "Escape") { done = true; show(); }
    });
    input.addEventListener("blur", save);
    li.replaceChildren(input);
    input.focus();
    input.select();
  }

  function askDelete() {
    li.replaceChildren(el("div", { class: "confirm" },
      el("span", { text: `Delete “${title}” and its ${s.turns} turn${s.turns === 1 ? "" : "s"}?` }),
      el("span", { class: "confirm-buttons" },
        el("button", { type: "button", class: "confirm-delete", onclick: stop(remove) }, "Delete"),
        el("button", { type: "button", class: "confirm-keep", onclick: stop(show) }, "Keep"))));
  }

  async function remove() {
    try {
      await api(`/api/sessions/${s.id}`, { method: "DELETE" });
    } catch (err) {
      show();
      fail(err);
      return;
    }
    if (state.session === s.id) await openSession(null);
    await loadSessions();
  }

  show();
  return li;
}

/** 🗑 drawn (an emoji font is not everywhere). */
function trashIcon() {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", "0 0 16 16");
  svg.setAttribute("width", "13");
  svg.setAttribute("height", "13");
  svg.setAttribute("aria-hidden", "true");
  svg.innerHTML = '<path d="M2.5 4h11M6 4V2.5h4V4M4 4l.8 9.5h6.4L12 4M6.6 6.5v5M9.4 6.5v5" '
    + 'fill="none" stroke="currentColor" stroke-width="1.3" stroke-linejoin="round"/>';
  return svg;
}

async function openSession(id) {
  state.session = id;
  history.replaceState(null, "", id ? `#session=${id}` : "#");
  setCurrent(null);
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
    if (state.session === id) setCurrent(session.current);
    for (const turn of session.turns) box.append(...renderTurn(turn));
    box.scrollTop = box.scrollHeight;
  } catch (err) {
    box.append(el("p", { class: "error", text: err.status === 404
      ? "That session does not exist any more (or belongs to another token)."
      : `The session could not be opened: ${sayError(err)}` }));
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
  // an image sent with the request, or the session's current one that it worked on
  if (input) userBubble.append(input.name === "current" ? workedOn(input) : thumbnail(input));
  if (user && user.region) {
    userBubble.append(el("p", { class: "region", text: `region: ${describeRegion(user.region)}` }));
  }

  const status = turn.status || "done";
  const outcome = outcomeOf(turn);
  const bubble = el("article", { class: `bubble assistant ${status} outcome-${outcome}`,
    "data-turn": turn.id, "data-status": status, "data-outcome": outcome });
  if (outcome !== "ok") {
    bubble.append(el("span", { class: "outcome-tag", text: outcome === "failed" ? "✗ failed" : "⚠ partly done",
      title: outcome === "failed" ? "Nothing this request asked for was done."
        : "Some of what this request asked for was done, some was not." }));
  }
  // No reply: the process stopped mid-turn (the store's reason is a sentence; a bug's is not).
  const why = turn.error && !/^\w+(Error|Exception)\b/.test(turn.error) ? `: ${turn.error}` : "";
  bubble.append(el("p", { class: "text reply", text: reply ? reply.text : `The request was not finished${why}.` }));
  const results = el("div", { class: "results" });
  bubble.append(results);
  drawResults(results, input, reply).catch((err) => results.append(
    el("p", { class: "error", text: `Could not draw the results: ${err.message}` })));
  if (turn.calls && turn.calls.length) bubble.append(traceTable(turn.calls));
  const files = [...(user ? user.artifacts : []), ...(reply ? reply.artifacts : [])];
  if (files.length) bubble.append(downloads(files));
  return [userBubble, bubble];
}

/** "ok" | "partial" | "failed": the server's, else from the calls' statuses (every call ok,
 * or none made: ok; some: partial; none ok: failed). A turn that did not finish failed. */
function outcomeOf(turn) {
  if (turn.status === "failed") return "failed";
  if (turn.outcome) return turn.outcome;
  const calls = turn.calls || [];
  const ok = calls.filter((c) => c.status === "ok").length;
  if (ok === calls.length) return "ok";
  return ok ? "partial" : "failed";
}

function thumbnail(artifact, alt = "the attached image") {
  const node = artifact.kind === "video"
    ? el("video", { class: "thumb", muted: "", playsinline: "" })
    : el("img", { class: "thumb", alt });
  artifactURL(artifact.sha256).then((url) => { node.src = url; }).catch(() => {});
  return node;
}

/** A request sent without a file worked on the session's current image (or video): a small
 * thumbnail of it, said to be that — the person did not upload it with this request. */
function workedOn(artifact) {
  const what = artifact.kind === "video" ? "video" : "image";
  return el("figure", { class: "worked-on", "data-sha256": artifact.sha256 },
    thumbnail(artifact, `the ${what} this request worked on`),
    el("figcaption", { text: `worked on the current ${what}` }));
}

async function drawResults(box, input, reply) {
  if (!reply) return;
  const masks = artifactsOf(reply, "mask");
  const isVideo = (a) => (a.media_type || "").startsWith("video/");
  const editedVideos = artifactsOf(reply, "edited").filter(isVideo);
  const edited = artifactsOf(reply, "edited").filter((a) => !isVideo(a));
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
  for (const v of editedVideos) {
    box.append(await videoBeforeAfter(input, v));
  }
}

/** An edited video beside the video it was made from, played together: one play/pause and
 * one frame scrubber drive both (the original follows the edit's clock), and a download. */
async function videoBeforeAfter(input, edited) {
  const make = async (sha, label) => {
    const v = el("video", { src: await artifactURL(sha), muted: "", loop: "", playsinline: "",
      preload: "auto", "aria-label": label });
    v.muted = true;
    return v;
  };
  const after = await make(edited.sha256, "the edited video");
  const before = input ? await make(input.sha256, "the original video") : null;
  const play = el("button", { type: "button", class: "play", "aria-label": "Play" }, "▶");
  const scrub = el("input", { type: "range", class: "scrub", min: 0, max: 1000, step: 1, value: 0,
    "aria-label": "position" });
  const both = before ? [before, after] : [after];
  const sync = () => {
    if (before && Math.abs(before.currentTime - after.currentTime) > 0.05) {
      before.currentTime = after.currentTime;
    }
    if (after.duration) scrub.value = String(Math.round(1000 * after.currentTime / after.duration));
    if (!after.paused) requestAnimationFrame(sync);
  };
  const label = () => {
    play.textContent = after.paused ? "▶" : "❚❚";
    play.setAttribute("aria-label", after.paused ? "Play" : "Pause");
  };
  after.addEventListener("play", () => { if (before) before.play().catch(() => {}); label(); requestAnimationFrame(sync); });
  after.addEventListener("pause", () => { if (before) before.pause(); label(); sync(); });
  after.addEventListener("seeked", sync);
  play.addEventListener("click", () => {
    if (after.paused) after.play();
    else for (const v of both) v.pause();
  });
  scrub.addEventListener("input", () => {
    for (const v of both) v.pause();
    const t = (Number(scrub.value) / 1000) * (after.duration || 0);
    for (const v of both) v.currentTime = t;
  });
  const download = el("a", { class: "download", href: `/api/artifacts/${edited.sha256}`,
    download: "edited.mp4", onclick: async (e) => {
      e.preventDefault();
      el("a", { href: await artifactURL(edited.sha256), download: "edited.mp4" }).click();
    } }, "Download the edited video");
  const side = el("div", { class: "side" },
    ...(before ? [el("figure", {}, before, el("figcaption", { text: "original" }))] : []),
    el("figure", {}, after, el("figcaption", { text: "edited" })));
  return el("figure", { class: "video-before-after", "data-sha256": edited.sha256 }, side,
    el("div", { class: "track-controls" }, play, scrub), download);
}

/** The input image with the masks (each toggled by its checkbox) and labelled boxes on top.
 * Each mask is filled and outlined in the colour that contrasts most with the pixels under it. */
async function overlayView(input, masks, boxes) {
  const base = await loadImage(await artifactURL(input.sha256));
  const w = base.naturalWidth;
  const h = base.naturalHeight;
  const pixels = (() => {
    const c = document.createElement("canvas");
    c.width = w;
    c.height = h;
    const ctx = c.getContext("2d");
    ctx.drawImage(base, 0, 0);
    return ctx.getImageData(0, 0, w, h).data;
  })();
  const canvas = el("canvas", { class: "overlay", width: w, height: h });
  const layers = [];
  const used = new Set();
  for (const m of masks) {
    const img = await loadImage(await artifactURL(m.sha256));
    const layer = document.createElement("canvas");
    layer.width = w;
    layer.height = h;
    const ctx = layer.getContext("2d");
    ctx.drawImage(img, 0, 0, w, h);
    const px = ctx.getImageData(0, 0, w, h);
    const on = new Uint8Array(w * h);
    const sum = [0, 0, 0];
    let n = 0;
    for (let i = 0; i < w * h; i++) {
      if (px.data[i * 4] > 127) {
        on[i] = 1;
        sum[0] += pixels[i * 4];
        sum[1] += pixels[i * 4 + 1];
        sum[2] += pixels[i * 4 + 2];
        n += 1;
      }
    }
    const mean = n ? sum.map((v) => v / n) : [128, 128, 128];
    const colour = contrastColour(mean, used);
    const rim = Math.max(2, Math.round(Math.max(w, h) / 128)); // the outline's width, in pixels
    used.add(colour);
    const [r, g, b] = hexRGB(colour);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const i = y * w + x;
        const p = i * 4;
        px.data[p] = r;
        px.data[p + 1] = g;
        px.data[p + 2] = b;
        // the outline (mask pixels within `rim` of the mask's edge) is opaque
        px.data[p + 3] = !on[i] ? 0 : nearEdge(on, w, h, x, y, rim) ? 255 : 140;
      }
    }
    ctx.putImageData(px, 0, 0);
    layers.push({ canvas: layer, visible: true, colour, mean });
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
  canvas.dataset.colours = JSON.stringify(layers.map((l) => l.colour));
  const toggles = el("div", { class: "toggles" });
  layers.forEach((layer, i) => {
    const cb = el("input", { type: "checkbox", class: "mask-toggle", checked: "",
      "data-mask": i, onchange: (e) => { layer.visible = e.target.checked; redraw(); } });
    toggles.append(el("label", { style: `--swatch:${layer.colour}` }, cb, ` mask ${i + 1}`));
  });
  return el("figure", { class: "overlay-view" },
    el("div", { class: "media-wrap" }, el("img", { src: base.src, alt: "the input image" }), canvas),
    masks.length ? toggles : null,
    el("figcaption", { text: [masks.length && `${masks.length} mask(s)`,
      boxes.length && `${boxes.length} box(es)`].filter(Boolean).join(", ") }));
}

/** Whether the mask pixel (x, y) lies within `r` pixels of the mask's edge (or the image's). */
function nearEdge(on, w, h, x, y, r) {
  if (x < r || y < r || x >= w - r || y >= h - r) return true;
  for (let dy = -r; dy <= r; dy++) {
    for (let dx = -r; dx <= r; dx++) {
      if (!on[(y + dy) * w + x + dx]) return true;
    }
  }
  return false;
}

function rgbDistance(a, b) {
  return Math.hypot(a[0] - b[0], a[1] - b[1], a[2] - b[2]);
}

/** The palette colour farthest from `mean` (RGB), preferring one no other mask has: the
 * farthest unused one when it is at least MIN_CONTRAST away, else the farthest of all. */
function contrastColour(mean, used) {
  const ranked = MASK_COLOURS.map((hex) => [hex, rgbDistance(hexRGB(hex), mean)])
    .sort((a, b) => b[1] - a[1]);
  const fresh = ranked.find(([hex]) => !used.has(hex));
  return (fresh && fresh[1] >= MIN_CONTRAST ? fresh : ranked[0])[0];
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

/** Before and after an edit. It opens on the edited image, whole, so the change is seen at
 * once; "Before" swaps in the input (a click toggles, holding it peeks). Side by side puts
 * the two next to each other; Slider cuts between them. With several edits in one turn, each
 * step is listed below. */
async function beforeAfter(input, edited) {
  const before = await artifactURL(input.sha256);
  const last = edited[edited.length - 1];
  const after = await artifactURL(last.sha256);
  const top = el("div", { class: "after" }, el("img", { src: after, alt: "after the edit" }));
  const view = el("figure", { class: "before-after", "data-before": input.sha256,
    "data-after": last.sha256, "data-view": "after", "data-showing": "after" });
  const slider = el("input", { type: "range", min: 0, max: 100, value: 50, class: "split",
    "aria-label": "before / after", oninput: () => apply() });
  const toggle = el("button", { type: "button", class: "show-before", "aria-pressed": "false",
    title: "Click to switch between the image before and after the edit; hold to peek" }, "Before");
  const names = { after: "After", side: "Side by side", slider: "Slider" };
  const switcher = el("div", { class: "view-switch", role: "group", "aria-label": "compare the edit" },
    ...Object.entries(names).map(([mode, label]) => el("button", { type: "button",
      class: "view-mode", "data-mode": mode, "aria-pressed": String(mode === "after"),
      onclick: () => { view.dataset.view = mode; showBefore = false; apply(); } }, label)));
  const caption = el("figcaption", {});
  let showBefore = false;
  function apply() {
    const mode = view.dataset.view;
    const showing = mode === "after" ? (showBefore ? "before" : "after") : mode;
    view.dataset.showing = showing;
    top.style.visibility = showing === "before" ? "hidden" : "visible";
    top.style.clipPath = mode === "slider" ? `inset(0 0 0 ${slider.value}%)` : "none";
    slider.hidden = mode !== "slider";
    toggle.hidden = mode !== "after";
    toggle.setAttribute("aria-pressed", String(showBefore));
    toggle.classList.toggle("on", showBefore);
    for (const b of switcher.children) b.setAttribute("aria-pressed", String(b.dataset.mode === mode));
    caption.replaceChildren(...(mode === "after"
      ? [el("span", { text: showBefore ? "before the edit" : "after the edit" })]
      : [el("span", { text: "before" }), el("span", { text: "after" })]));
  }
  // A click toggles; a press held longer than 250 ms shows "before" until it is let go.
  let holdTimer = null;
  let held = false;
  toggle.addEventListener("pointerdown", () => {
    held = false;
    holdTimer = setTimeout(() => { held = true; showBefore = true; apply(); }, 250);
  });
  const release = () => {
    clearTimeout(holdTimer);
    if (held) { showBefore = false; apply(); }
  };
  for (const ev of ["pointerup", "pointerleave", "pointercancel"]) toggle.addEventListener(ev, release);
  toggle.addEventListener("click", () => {
    if (held) { held = false; return; }
    showBefore = !showBefore;
    apply();
  });
  view.append(el("div", { class: "compare-tools" }, switcher, toggle),
    el("div", { class: "media-wrap" }, el("img", { class: "before", src: before, alt: "before the edit" }), top),
    slider, caption);
  apply();
  if (edited.length > 1) {
    const steps = el("div", { class: "steps" });
    for (const [i, e] of edited.entries()) {
      steps.append(el("img", { src: await artifactURL(e.sha256), alt: `edit ${i + 1}`, title: `edit ${i + 1}` }));
    }
    view.append(steps);
  }
  return view;
}

/** The video with every track's box (and its path so far) drawn on the frame on screen; its
 * controls (play/pause, a frame scrubber) sit below the picture, never over a tracked object. */
async function trackView(input, tracks, fps) {
  const video = el("video", { src: await artifactURL(input.sha256), muted: "",
    loop: "", playsinline: "", preload: "auto" });
  video.muted = true;
  const play = el("button", { type: "button", class: "play", "aria-label": "Play" }, "▶");
  const scrub = el("input", { type: "range", class: "scrub", min: 0, max: 0, step: 1, value: 0,
    "aria-label": "frame" });
  const where = el("span", { class: "frame-label" });
  let scrubbing = false;
  const frames = () => Math.max(1, Math.round((video.duration || 0) * fps));
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
    const shown = Math.min(frames() - 1, Math.floor(video.currentTime * fps + 1e-3));
    if (!scrubbing) scrub.value = String(shown);
    where.textContent = `frame ${shown + 1} / ${frames()}`;
  };
  const loop = () => {
    draw();
    if (!video.paused && !video.ended) requestAnimationFrame(loop);
  };
  for (const ev of ["loadeddata", "seeked", "timeupdate", "pause"]) video.addEventListener(ev, draw);
  video.addEventListener("play", () => requestAnimationFrame(loop));
  video.addEventListener("loadedmetadata", () => { scrub.max = String(frames() - 1); draw(); });
  const label = () => {
    play.textContent = video.paused ? "▶" : "❚❚";
    play.setAttribute("aria-label", video.paused ? "Play" : "Pause");
  };
  video.addEventListener("play", label);
  video.addEventListener("pause", label);
  play.addEventListener("click", () => (video.paused ? video.play() : video.pause()));
  scrub.addEventListener("input", () => {
    scrubbing = true;
    video.pause();
    video.currentTime = (Number(scrub.value) + 0.5) / fps; // the middle of the frame
  });
  scrub.addEventListener("change", () => { scrubbing = false; });
  const legend = el("ul", { class: "legend" }, ...tracks.map((t, i) => el("li",
    { style: `--swatch:${PALETTE[i % PALETTE.length]}` },
    `#${t.track_id} ${t.label}: frames ${t.frames[0]}–${t.frames[t.frames.length - 1]}`)));
  return el("figure", { class: "track-view" }, el("div", { class: "media-wrap" }, video, canvas),
    el("div", { class: "track-controls" }, play, scrub, where), legend, el("figcaption", { text: `${tracks.length} track(s) at ${fps} fps` }));
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
    const ext = a.media_type === "application/json" ? ".json" : a.media_type === "image/png" ? ".png"
      : a.media_type === "video/mp4" ? ".mp4" : "";
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

/** The message's length against the server's limit, shown under the box as it is typed. */
function updateCounter() {
  const n = [...$("#text").value].length; // characters, as the server counts them
  const counter = $("#counter");
  counter.textContent = `${n} / ${state.maxText}`;
  counter.classList.toggle("over", n > state.maxText);
}

/** Attach `file` (null: remove the attached one). It is sent with the next request, and
 * becomes the session's current image then; until it is sent it is kept across a reload. */
function setFile(file, { keep = true } = {}) {
  if (file && !/^(image|video)\//.test(file.type)) {
    setError(`${file.name} is not an image or a video; attach an image (PNG, JPEG, WebP, GIF, BMP) or a video (MP4, WebM, AVI, MOV).`);
    return;
  }
  setError("");
  state.file = file;
  if (keep) keepAttachment(file);
  showStage();
}

// -- the stage: what a region is drawn on ---------------------------------------------------
// The attached file; with none, the session's current image (what the request will work on).
let onStage = null; // the File, or the current version's sha256, that the stage shows

function showStage() {
  const file = state.file;
  const cur = file ? null : state.current;
  const what = file || (cur && cur.sha256) || null;
  $("#remove-file").hidden = !file;
  $("#drop-hint").hidden = !!file;
  $("#drop-words").textContent = cur ? "Drop another image or video here, or" : "Drop an image or a video here, or";
  $("#drop-instead").hidden = !cur;
  $("#current-note").hidden = !(file && state.current);
  const stage = $("#stage");
  stage.hidden = !what;
  stage.dataset.showing = file ? "file" : cur ? "current" : "";
  stage.dataset.sha256 = cur ? cur.sha256 : "";
  if (what === onStage) return; // the same picture: the region drawn on it stays
  onStage = what;
  clearRegion();
  $("#stage-canvas").dataset.ready = "0";
  if (!what) return;
  const img = $("#stage-image");
  const video = $("#stage-video");
  const isVideo = file ? file.type.startsWith("video/") && file.type !== "image/gif" : cur.kind === "video";
  img.hidden = isVideo;
  video.hidden = !isVideo;
  const show = (url) => {
    if (onStage !== what) return; // replaced meanwhile
    if (isVideo) {
      video.onloadeddata = () => { if (onStage === what) sizeCanvas(video.videoWidth, video.videoHeight); };
      video.src = url;
      return;
    }
    img.onload = () => { if (onStage === what) sizeCanvas(img.naturalWidth, img.naturalHeight); };
    img.onerror = () => {
      if (onStage !== what) return;
      if (!file) {
        setError("The current image could not be shown; reload the page to try again.");
        return;
      }
      // every type the server takes decodes here: this one is not an image
      $("#file").value = "";
      setFile(null);
      setError(`${file.name} is not an image I can read (it may be damaged or not an image).`);
    };
    img.src = url;
  };
  if (file) show(URL.createObjectURL(file));
  else artifactURL(cur.sha256).then(show, (err) => setError(sayError(err)));
}

// -- the session's current image ------------------------------------------------------------
// What a request sent without a file works on, kept by the server: the last image or video
// sent, or the last one an edit or a generation made. Undo goes back to the one it was made
// from; Redo forward again. The composer shows it: "Working on: [thumbnail] (edited)".
const SOURCES = { upload: "uploaded", edited: "edited", generated: "generated" };
// Per session (in this tab, across reloads): the versions known to have a version made from
// them — where Redo has somewhere to go. Every current's parent is one; an undo makes another.
const MADE_FROM = "switchboard.madeFrom";

function madeFrom() {
  try {
    return JSON.parse(sessionStorage.getItem(MADE_FROM)) || {};
  } catch (_) {
    return {};
  }
}

function noteMadeFrom(id, yes = true) {
  if (!state.session || id === null || id === undefined) return;
  const all = madeFrom();
  const ids = new Set(all[state.session] || []);
  if (yes === ids.has(id)) return;
  if (yes) ids.add(id); else ids.delete(id);
  all[state.session] = [...ids];
  sessionStorage.setItem(MADE_FROM, JSON.stringify(all));
}

function canRedo() {
  const cur = state.current;
  return !!(cur && state.session && (madeFrom()[state.session] || []).includes(cur.id));
}

/** The session's current version (the server's dict, or null): shown, and put on the stage
 * when no file is attached. */
function setCurrent(current) {
  state.current = current || null;
  if (current) noteMadeFrom(current.parent_id);
  const box = $("#current");
  box.hidden = !current;
  box.dataset.source = current ? current.source : "";
  const img = $("#current-image");
  const video = $("#current-video");
  for (const node of [img, video]) {
    if (!current || node.dataset.sha256 !== current.sha256) {
      node.removeAttribute("src");
      delete node.dataset.sha256;
    }
  }
  if (current) {
    const isVideo = current.kind === "video";
    img.hidden = isVideo;
    video.hidden = !isVideo;
    const node = isVideo ? video : img;
    $("#current-source").textContent = `(${SOURCES[current.source] || current.source})`;
    artifactURL(current.sha256).then((url) => {
      if (state.current !== current) return;
      node.src = url;
      node.dataset.sha256 = current.sha256; // what it shows (the URL is the blob's)
    }).catch((err) => setError(sayError(err)));
  }
  updateMoveButtons();
  showStage();
}

function updateMoveButtons() {
  const cur = state.current;
  $("#undo").disabled = state.busy || !cur || cur.parent_id === null || cur.parent_id === undefined;
  $("#redo").disabled = state.busy || !canRedo();
}

/** Undo (`back`) or redo: the server moves the current version; a 409's sentence is shown. */
async function move(back) {
  const id = state.session;
  const from = state.current;
  if (state.busy || !id || !from) return;
  setError("");
  $("#undo").disabled = true;
  $("#redo").disabled = true;
  try {
    const r = await api(`/api/sessions/${id}/${back ? "undo" : "redo"}`, { method: "POST" });
    const { current } = await r.json();
    if (state.session !== id) return;
    if (back) noteMadeFrom(current.id); // what was undone can be redone
    setCurrent(current);
  } catch (err) {
    if (state.session !== id) return;
    if (!back && err.status === 409 && /nothing to redo/i.test(err.detail)) noteMadeFrom(from.id, false);
    updateMoveButtons();
    setError(sayError(err));
  }
}

/** Read the session's current version from the server again. */
async function refreshCurrent() {
  const id = state.session;
  if (!id) return;
  try {
    const session = await (await api(`/api/sessions/${id}`)).json();
    if (state.session === id) setCurrent(session.current);
  } catch (_) { /* the page keeps what it showed */ }
}

// -- the attached file survives a reload ----------------------------------------------------
// Its bytes go to IndexedDB under this tab's id (sessionStorage: a reload keeps it, a new tab
// starts empty); sessionStorage also notes that a file was attached, so that a file that could
// not be kept (too big, storage refused) is explained rather than silently gone.
const ATTACHED = "switchboard.attached";
const KEEP_AT_MOST = 64e6; // bytes
const TAB = sessionStorage.getItem("switchboard.tab")
  || `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
sessionStorage.setItem("switchboard.tab", TAB);

function attachments(mode, work) {
  return new Promise((resolve, reject) => {
    let open;
    try {
      open = indexedDB.open("switchboard", 1);
    } catch (err) {
      reject(err);
      return;
    }
    open.onupgradeneeded = () => open.result.createObjectStore("attachments");
    open.onerror = () => reject(open.error);
    open.onsuccess = () => {
      const db = open.result;
      let result;
      try {
        const tx = db.transaction("attachments", mode);
        const req = work(tx.objectStore("attachments"));
        if (req) req.onsuccess = () => { result = req.result; };
        tx.oncomplete = () => { db.close(); resolve(result); };
        tx.onerror = tx.onabort = () => { db.close(); reject(tx.error); };
      } catch (err) {
        db.close();
        reject(err);
      }
    };
  });
}

async function keepAttachment(file) {
  if (!file) {
    sessionStorage.removeItem(ATTACHED);
    await attachments("readwrite", (store) => store.delete(TAB)).catch(() => {});
    return;
  }
  sessionStorage.setItem(ATTACHED, file.name);
  try {
    if (file.size > KEEP_AT_MOST) throw new Error("too big to keep");
    const bytes = await file.arrayBuffer();
    if (state.file !== file) return; // replaced meanwhile
    await attachments("readwrite", (store) => store.put({ name: file.name, type: file.type,
      lastModified: file.lastModified, bytes, saved: Date.now() }, TAB));
  } catch (_) {
    await attachments("readwrite", (store) => store.delete(TAB)).catch(() => {});
  }
}

/** Put the file attached before the reload back in the composer, or say why it is gone. */
async function restoreAttachment() {
  const name = sessionStorage.getItem(ATTACHED);
  // forget what other tabs left a day ago or more
  const old = Date.now() - 86400e3;
  attachments("readwrite", (store) => {
    const req = store.openCursor();
    req.onsuccess = () => {
      const cur = req.result;
      if (!cur) return;
      if (cur.key !== TAB && !(cur.value.saved > old)) cur.delete();
      cur.continue();
    };
    return null;
  }).catch(() => {});
  if (!name) return;
  let kept = null;
  try {
    kept = await attachments("readonly", (store) => store.get(TAB));
  } catch (_) { /* storage refused */ }
  if (kept && kept.bytes && !state.file) {
    setFile(new File([kept.bytes], kept.name, { type: kept.type, lastModified: kept.lastModified }),
      { keep: false });
    return;
  }
  if (state.file) return;
  sessionStorage.removeItem(ATTACHED);
  setError(`Your attached file (${name}) was dropped when the page reloaded; attach it again.`);
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
  if (state.busy) return;
  const text = $("#text").value.trim();
  if (!text) {
    setError(EXAMPLE);
    $("#text").focus();
    return;
  }
  const n = [...text].length;
  if (n > state.maxText) {
    setError(`Your message is ${n} characters long; the limit is ${state.maxText}. Shorten it, then send.`);
    return;
  }
  if (state.file && state.file.size > state.maxUpload) {
    setError(`${state.file.name} is ${megabytes(state.file.size)}; the largest file this server takes is ${megabytes(state.maxUpload)}.`);
    return;
  }
  const sent = state.file; // with none, the server works on the session's current image
  state.busy = true;
  $("#send").disabled = true;
  updateMoveButtons();
  setError("");
  const box = $("#messages");
  const empty = $("#empty");
  if (empty) empty.remove();
  const userBubble = el("article", { class: "bubble user pending" }, el("p", { class: "text", text }));
  if (sent) {
    const thumb = sent.type.startsWith("video/")
      ? el("video", { class: "thumb", src: URL.createObjectURL(sent), muted: "" })
      : el("img", { class: "thumb", src: URL.createObjectURL(sent), alt: "the attached image" });
    userBubble.append(thumb);
  } else if (state.current) {
    userBubble.append(workedOn(state.current));
  }
  const progress = el("p", { class: "progress" });
  const live = el("article", { class: "bubble assistant streaming", "data-status": "streaming" },
    el("p", { class: "text reply", text: "…" }), progress);
  const trace = el("tbody");
  live.append(el("details", { class: "trace", open: "" }, el("summary", { text: "working…" }),
    el("table", {}, trace)));
  box.append(userBubble, live);
  box.scrollTop = box.scrollHeight;
  const ticker = progressLine(progress);
  ticker.stage("sending", "sending…");
  try {
    if (!state.session) {
      state.session = (await (await api("/api/sessions", { method: "POST" })).json()).id;
      history.replaceState(null, "", `#session=${state.session}`);
    }
    const form = new FormData();
    form.append("text", text);
    if (sent) form.append("file", sent, sent.name);
    const region = regionJSON();
    if (region) form.append("region", region);
    const r = await api(`/api/sessions/${state.session}/messages/stream`, { method: "POST", body: form });
    ticker.stage("routing", "routing…");
    const turn = await readEvents(r, live, trace, ticker);
    const [u, a] = renderTurn(turn);
    userBubble.replaceWith(u);
    live.replaceWith(a);
    $("#text").value = "";
    updateCounter();
    clearRegion();
    // The file sent is the session's current image now: the next request works on it (or on
    // what this one made of it) without sending it again.
    if (turn.current !== undefined && turn.session === state.session) setCurrent(turn.current);
    if (sent && state.file === sent) {
      $("#file").value = "";
      setFile(null);
    }
    if (turn.current === undefined) await refreshCurrent();
  } catch (err) {
    userBubble.remove();
    live.remove();
    setError(sayError(err)); // the text, file and region are kept
    refreshCurrent(); // a turn that began and then failed may have made the upload current
  } finally {
    ticker.stop();
    state.busy = false;
    $("#send").disabled = false;
    updateMoveButtons();
    box.scrollTop = box.scrollHeight;
    loadSessions();
  }
}

function megabytes(n) {
  return n >= 1e6 ? `${(n / 1e6).toFixed(1)} MB` : `${Math.round(n / 1e3)} kB`;
}

/** The live line under a streaming reply: the stage running now ("routing…", "running
 * segment…") and how long it has run, redrawn every 150 ms. */
function progressLine(node) {
  const began = performance.now();
  let since = began;
  let label = "";
  let stages = 0;
  const draw = () => {
    const now = performance.now();
    const all = stages > 1 ? ` · ${((now - began) / 1000).toFixed(1)} s in all` : "";
    node.textContent = `${label} ${((now - since) / 1000).toFixed(1)} s${all}`;
  };
  const timer = setInterval(draw, 150);
  return {
    stage(name, text) {
      if (text === label) return;
      label = text;
      stages += 1;
      since = performance.now();
      node.dataset.stage = name;
      draw();
    },
    stop() {
      clearInterval(timer);
    },
  };
}

/** Read the SSE stream: show the route, each call and the reply as they come; return the
 * finished turn in the history's shape. */
async function readEvents(response, live, trace, ticker) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  const rows = new Map();
  const running = new Map(); // step:index -> tool
  const showRunning = () => {
    const tools = [...new Set(running.values())];
    if (tools.length) ticker.stage("running", `running ${tools.join(", ")}…`);
    else ticker.stage("routing", "routing…"); // the router reads what the calls found
  };
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
        if (ev.calls.length) ticker.stage("running", `running ${ev.calls.map((c) => c.tool).join(", ")}…`);
        else ticker.stage("replying", "writing the reply…");
      } else if (ev.type === "call_started") {
        const row = traceRow(rows.size, { tool: ev.tool, args: ev.args });
        rows.set(`${ev.step}:${ev.index}`, row);
        trace.append(row);
        running.set(`${ev.step}:${ev.index}`, ev.tool);
        showRunning();
      } else if (ev.type === "call_finished") {
        const row = traceRow(rows.size - 1, ev);
        const key = `${ev.step}:${ev.index}`;
        if (rows.has(key)) rows.get(key).replaceWith(row);
        rows.set(key, row);
        running.delete(key);
        showRunning();
      } else if (ev.type === "text") {
        $(".reply", live).textContent = ev.text;
        ticker.stage("saving", "saving the results…");
      } else if (ev.type === "turn") {
        const t = ev.turn;
        return { id: t.turn, status: "done", outcome: t.outcome, messages: t.messages, calls: t.calls,
          session: t.session, current: t.current };
      } else if (ev.type === "error") {
        throw new ApiError(422, ev.detail);
      }
    }
  }
  throw new Error("The server stopped answering before the reply was finished; send the request again.");
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
  $("#text").addEventListener("input", () => {
    updateCounter();
    if ($("#composer-error").textContent === EXAMPLE) setError("");
  });
  $("#new-session").addEventListener("click", () => openSession(null));
  $("#undo").addEventListener("click", () => move(true));
  $("#redo").addEventListener("click", () => move(false));
  $("#token").addEventListener("change", (e) => {
    state.token = e.target.value.trim();
    localStorage.setItem("switchboard.token", state.token);
    loadSessions();
  });
  try {
    const health = await (await fetch("/api/health")).json();
    state.auth = health.auth;
    state.maxText = health.max_text || state.maxText;
    state.maxUpload = health.max_upload_bytes || state.maxUpload;
    updateCounter();
    showToken(health.auth);
    const calls = health.calls === "hybrid" ? "hybrid calls (text + signal embeddings)" : "text calls";
    $("#status").textContent =
      `${health.tools.length} specialists: ${health.tools.join(", ")} · ${calls}`;
  } catch (err) {
    $("#status").textContent = `The server did not answer: ${err.message}`;
  }
  await restoreAttachment();
  await loadSessions();
  const m = location.hash.match(/session=([0-9a-f]+)/);
  if (m) await openSession(m[1]);
  document.body.dataset.ready = "1";
}

start();
