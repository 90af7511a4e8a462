// jrc-edge live view: tiles of live frames, per-track timelines, recent events. Plain JavaScript, no
// library: it polls the JSON routes once a second and asks each camera for its next frame as soon as
// the last one has arrived (the server sends at most --web-fps a second). Frames are asked for only
// while the page is visible, so a hidden tab costs the box nothing. A box started again (on the same
// port) numbers its events and frames from 0 again under a new run id: the page then starts over.
"use strict";

const POLL_MS = 1000;
const TIMELINE_S = 60;
const tiles = new Map(); // camera name -> {el, img, stats, state, note, timelines, canvases}
const events = new Map(); // event id -> event (latest state)
let cursor = 0;
let run = ""; // the server's run id: cursor and each tile's seq are numbers of this run

const $ = (sel, root = document) => root.querySelector(sel);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const fmt = (x, digits = 2) => (x === null || x === undefined ? "–" : Number(x).toFixed(digits));

async function getJSON(url) {
  const r = await fetch(url, { cache: "no-store" });
  if (!r.ok) throw new Error(`${url}: ${r.status}`);
  return r.json();
}

function scoreColor(p) {
  // green (real) through yellow to red (fake), as the boxes on the frames
  const q = Math.min(1, Math.max(0, p ?? 0));
  const g = Math.round(255 * Math.min(1, 2 * (1 - q)));
  const r = Math.round(255 * Math.min(1, 2 * q));
  return `rgb(${r}, ${g}, 60)`;
}

// --- tiles -----------------------------------------------------------------------------------
function tileFor(cam) {
  let t = tiles.get(cam.camera);
  if (t) return t;
  const el = $("#tile-template").content.firstElementChild.cloneNode(true);
  el.dataset.camera = cam.camera;
  $(".name", el).textContent = cam.camera;
  const img = $(".frame", el);
  img.alt = `camera ${cam.camera}, live`;
  t = { el, img, stats: $(".stats", el), state: $(".state", el), note: $(".frame-note", el),
        timelines: $(".timelines", el), canvases: new Map(), seq: 0, run: "", name: cam.camera,
        url: cam.frame_url };
  $("#tiles").append(el);
  tiles.set(cam.camera, t);
  pump(t);
  return t;
}

function showCamera(cam) {
  const t = tileFor(cam);
  $(".name", t.el).title = cam.source;
  const ended = cam.status !== "running";
  t.state.textContent = cam.up ? "up" : ended ? (cam.status === "ok" ? "ended" : cam.status.replace("_", " ")) : "down";
  t.state.className = `state ${cam.up ? "up" : "down"}`;
  t.state.title = cam.error || "";
  t.stats.textContent = `${fmt(cam.fps, 1)} fps · ${cam.dropped} dropped · ${cam.frames} frames`;
  if (!t.seq) t.note.textContent = cam.frames ? "waiting for a frame…" : "no frame yet";
}

async function pump(t) {
  // one frame after another, each newer than the last; the server paces them. The run goes with the
  // seq: a box started again answers with its latest frame at once, whatever this run's seq was.
  while (tiles.get(t.name) === t) {
    if (document.hidden) { await sleep(500); continue; }
    try {
      const r = await fetch(`${t.url}?after=${t.seq}&run=${encodeURIComponent(t.run)}`, { cache: "no-store" });
      if (r.status === 200) {
        const seq = Number(r.headers.get("X-Frame-Seq")) || t.seq + 1;
        t.run = r.headers.get("X-Run") || "";
        const blob = await r.blob();
        const url = URL.createObjectURL(blob);
        const old = t.img.src;
        t.img.onload = () => { if (old.startsWith("blob:")) URL.revokeObjectURL(old); };
        t.img.src = url;
        t.img.dataset.seq = String(seq);
        t.seq = seq;
        t.note.textContent = "";
      } else if (r.status === 204) {
        // no new frame for a while (the camera is down or has ended): ask again
      } else {
        t.note.textContent = r.status === 503 ? "too many viewers; retrying…" : `frame: HTTP ${r.status}`;
        await sleep(5000);
      }
    } catch (e) {
      t.note.textContent = "the box does not answer; retrying…";
      await sleep(2000);
    }
  }
}

function dropTiles(listed) {
  // a camera the box no longer has (it started again with others): its tile goes, its pump ends
  for (const [name, t] of tiles) {
    if (!listed.has(name)) { t.el.remove(); tiles.delete(name); }
  }
}

// --- timelines -------------------------------------------------------------------------------
function showTracks(cam) {
  const t = tiles.get(cam.camera);
  if (!t) return;
  const live = new Set();
  const now = Math.max(0, ...cam.tracks.map((k) => k.last_time));
  for (const track of cam.tracks) {
    live.add(track.track);
    let row = t.canvases.get(track.track);
    if (!row) {
      const el = document.createElement("div");
      el.className = "timeline";
      el.dataset.track = String(track.track);
      const label = document.createElement("span");
      label.className = "label";
      const canvas = document.createElement("canvas");
      canvas.setAttribute("aria-label", `track ${track.track}: p(fake) over the last minute`);
      el.append(label, canvas);
      t.timelines.append(el);
      row = { el, label, canvas };
      t.canvases.set(track.track, row);
    }
    row.label.replaceChildren(document.createTextNode(`#${track.track} `), bold(fmt(track.prob)));
    drawTimeline(row.canvas, track.points, cam.threshold, now);
  }
  for (const [id, row] of t.canvases) {
    if (!live.has(id)) { row.el.remove(); t.canvases.delete(id); }
  }
  let empty = $(".empty", t.timelines);
  if (!cam.tracks.length && !empty) {
    empty = document.createElement("p");
    empty.className = "empty";
    empty.textContent = "no face in view";
    t.timelines.append(empty);
  } else if (cam.tracks.length && empty) {
    empty.remove();
  }
}

function bold(text) {
  const b = document.createElement("b");
  b.textContent = text;
  return b;
}

function drawTimeline(canvas, points, threshold, now) {
  const dpr = window.devicePixelRatio || 1;
  const w = Math.max(50, Math.round(canvas.clientWidth * dpr));
  const h = Math.max(20, Math.round(canvas.clientHeight * dpr));
  if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, w, h);
  const x = (time) => w * (1 - (now - time) / TIMELINE_S);
  const y = (p) => h - 2 - (h - 4) * p;
  // the threshold, dashed
  ctx.strokeStyle = "rgba(229, 72, 77, 0.9)";
  ctx.lineWidth = Math.max(1, dpr);
  ctx.setLineDash([4 * dpr, 3 * dpr]);
  ctx.beginPath();
  ctx.moveTo(0, y(threshold));
  ctx.lineTo(w, y(threshold));
  ctx.stroke();
  ctx.setLineDash([]);
  // p(fake): a line, each segment in the colour of its score
  ctx.lineWidth = 2 * dpr;
  let prev = null;
  for (const [time, p] of points) {
    if (p === null) { prev = null; continue; }
    const pt = [x(time), y(p)];
    if (prev) {
      ctx.strokeStyle = scoreColor(p);
      ctx.beginPath();
      ctx.moveTo(prev[0], prev[1]);
      ctx.lineTo(pt[0], pt[1]);
      ctx.stroke();
    } else {
      ctx.fillStyle = scoreColor(p);
      ctx.fillRect(pt[0] - dpr, pt[1] - dpr, 2 * dpr, 2 * dpr);
    }
    prev = pt;
  }
  canvas.dataset.points = String(points.length);
}

// --- events ----------------------------------------------------------------------------------
function showEvents() {
  const list = $("#events");
  const sorted = [...events.values()].sort((a, b) => (b.start || "").localeCompare(a.start || ""));
  $("#no-events").hidden = sorted.length > 0;
  const items = sorted.map(eventItem);
  list.replaceChildren(...items);
}

const eventItems = new Map(); // id -> {el, seq}

function eventItem(e) {
  const had = eventItems.get(e.id);
  if (had && had.seq === e.seq) return had.el;
  const el = had ? had.el : $("#event-template").content.firstElementChild.cloneNode(true);
  el.dataset.id = e.id;
  el.dataset.camera = e.camera;
  el.classList.toggle("open", e.active);
  const shot = $(".shot", el);
  if (e.snapshot && shot.dataset.src !== e.snapshot + e.peak_frame) {
    shot.src = `${e.snapshot}?peak=${e.peak_frame}`; // a new peak, a new picture
    shot.dataset.src = e.snapshot + e.peak_frame;
    shot.alt = `event on ${e.camera}, track ${e.track}, at its peak`;
  } else if (!e.snapshot) {
    shot.removeAttribute("src");
  }
  const start = e.start ? new Date(e.start) : null;
  const end = e.end ? new Date(e.end) : null;
  const span = start && end ? `${((end - start) / 1000).toFixed(1)} s` : "open";
  $(".event-head", el).replaceChildren(
    document.createTextNode(`${e.camera} · track ${e.track} · peak ${fmt(e.peak_prob)} `),
    ...(e.active ? [badge("open")] : []));
  $(".event-body", el).textContent =
    `${start ? start.toLocaleTimeString() : "–"} · ${span} · mean ${fmt(e.mean_prob)} over ${e.frames} frames` +
    (e.end_reason ? ` · ${e.end_reason.replace("_", " ")}` : "");
  const actions = $(".event-actions", el);
  const links = [];
  if (e.clip) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "play";
    b.textContent = "▶ clip";
    b.addEventListener("click", () => play(e));
    const a = document.createElement("a");
    a.href = e.clip;
    a.download = "";
    a.textContent = "download";
    links.push(b, a);
  }
  if (e.clip_pending) {
    const s = document.createElement("span");
    s.className = "pending";
    s.textContent = "clip being written…";
    links.push(s);
  }
  if (e.crop) {
    const a = document.createElement("a");
    a.href = e.crop;
    a.target = "_blank";
    a.rel = "noopener";
    a.textContent = "face";
    links.push(a);
  }
  actions.replaceChildren(...links);
  eventItems.set(e.id, { el, seq: e.seq });
  return el;
}

function badge(text) {
  const s = document.createElement("span");
  s.className = "badge-open";
  s.textContent = text;
  return s;
}

function play(e) {
  const dialog = $("#player");
  const video = $("#player-video");
  $("#player-title").textContent = `${e.camera} · track ${e.track} · peak ${fmt(e.peak_prob)}`;
  video.src = e.clip;
  dialog.showModal();
  video.play().catch(() => {}); // muted: allowed without a gesture; the controls are there otherwise
}

function stopPlayer() {
  const video = $("#player-video");
  video.pause();
  video.removeAttribute("src");
  video.load();
}

// --- polling ---------------------------------------------------------------------------------
async function poll() {
  for (;;) {
    try {
      const [cams, tracks, news] = await Promise.all([
        getJSON("/api/cameras"), getJSON("/api/tracks"),
        getJSON(`/api/events?since=${cursor}&run=${encodeURIComponent(run)}`)]);
      for (const cam of cams.cameras) showCamera(cam);
      dropTiles(new Set(cams.cameras.map((c) => c.camera)));
      for (const cam of tracks.cameras) showTracks(cam);
      if (news.run !== run) {
        // another run (the box started again): this answer has all its events (our cursor was not its)
        events.clear();
        eventItems.clear();
        cursor = 0;
        run = news.run;
      }
      for (const e of news.events) events.set(e.id, e);
      cursor = Math.max(cursor, news.cursor);
      showEvents();
      const up = cams.cameras.filter((c) => c.up).length;
      const open = [...events.values()].filter((e) => e.active).length;
      $("#summary").textContent =
        `${up} of ${cams.cameras.length} cameras up · ${open} open event${open === 1 ? "" : "s"} · ` +
        `frames at most ${cams.web_fps}/s · updated ${new Date().toLocaleTimeString()}`;
    } catch (e) {
      $("#summary").textContent = "the box does not answer; retrying…";
    }
    await sleep(POLL_MS);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("#player-close").addEventListener("click", () => $("#player").close());
  $("#player").addEventListener("close", stopPlayer);
  poll();
});
