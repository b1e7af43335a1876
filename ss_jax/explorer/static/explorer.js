// ss-jax channel explorer front end: vanilla JS, no external resources, no build step.
"use strict";

const S = {
  info: null, catalogue: null, sources: [], edits: new Map(), // name -> alpha
  inflight: false, dirty: false, selected: null, captions: [],
};
const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("data-")) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

function setStatus(text, state) {
  const s = $("status");
  s.textContent = text;
  s.dataset.state = state || "ready";
}

async function api(path, body) {
  const opts = body === undefined ? {} : {
    method: "POST", headers: {"Content-Type": "application/json", "X-Explorer": "1"}, body: JSON.stringify(body)};
  const r = await fetch(path, opts);
  const d = await r.json().catch(() => ({error: `HTTP ${r.status}`}));
  if (!r.ok) throw new Error(d.error || `HTTP ${r.status}`);
  return d;
}

function parseSeeds(spec) {
  const out = [];
  for (const part of spec.split(",").map((p) => p.trim()).filter(Boolean)) {
    const m = part.match(/^(\d+)(?:-(\d+))?$/);
    if (!m) throw new Error(`bad seeds "${spec}": use e.g. 0,1,5 or 0-3`);
    const a = Number(m[1]), b = Number(m[2] || m[1]);
    for (let s = a; s <= b && out.length <= 8; s++) out.push(s);
  }
  if (!out.length || out.length > 8) throw new Error("give 1 to 8 seeds");
  return out;
}

// ------------------------------------------------------------------ images and rendering

function scale() { return Math.max(1, Math.floor(200 / S.info.resolution)); }

function buildImages() {
  const box = $("images");
  box.replaceChildren();
  const px = S.info.resolution * scale();
  S.sources.forEach((src, i) => {
    const mk = (cls) => { const im = el("img", {class: cls, alt: cls}); im.width = px; im.height = px; return im; };
    const card = el("div", {class: "image-card", "data-index": i},
      el("div", {class: "stack"}, mk("base"), mk("layer-delta"), mk("layer-outline")),
      el("div", {class: "caption"}, S.captions[i]), el("div", {class: "measure"}));
    card.style.width = `${px}px`;
    box.append(card);
  });
}

function editsList() {
  return [...S.edits.entries()].map(([channel, alpha]) => ({channel, alpha}));
}

function scheduleRender() {
  if (S.inflight) { S.dirty = true; return; }
  renderNow();
}

async function renderNow() {
  if (!S.sources.length) return;
  S.inflight = true; S.dirty = false;
  const body = {images: S.sources, edits: editsList(), delta: $("show-delta").checked,
                outline: $("show-outline").checked};
  const tag = JSON.stringify(body.edits);
  const inputAt = S.inputAt;
  setStatus("rendering…", "busy");
  try {
    const t0 = performance.now();
    const d = await api("/api/render", body);
    document.querySelectorAll(".image-card").forEach((card, i) => {
      const r = d.images[i];
      if (!r) return;
      const [base, delta, outline] = card.querySelectorAll("img");
      if (i === 0 && inputAt !== undefined) {  // slider input -> new image shown (bench_explore reads it)
        base.onload = () => {
          document.body.dataset.latencyMs = (performance.now() - inputAt).toFixed(1);
          document.body.dataset.latencyEdits = tag;
        };
      }
      base.src = r.image;
      base.dataset.edits = tag;
      delta.hidden = !r.delta; if (r.delta) delta.src = r.delta;
      base.classList.toggle("dimmed", Boolean(r.delta));
      outline.hidden = !r.outline; if (r.outline) outline.src = r.outline;
      const m = card.querySelector(".measure");
      m.textContent = r.max_delta === undefined ? "" : `max |Δ| ${r.max_delta}` +
        (r.locality === undefined ? "" : ` · inside ${r.region}: ${r.locality === null ? "–" : r.locality} ` +
         `(area ${r.area})`);
    });
    setStatus(`rendered in ${Math.round(performance.now() - t0)} ms`, "ready");
  } catch (e) {
    setStatus(e.message, "error");
  }
  S.inflight = false;
  if (S.dirty) renderNow();
}

// ------------------------------------------------------------------ sliders

function addSlider(name) {
  if (S.edits.has(name)) return;
  if ($("sliders").querySelector(".hint")) $("sliders").replaceChildren();
  S.edits.set(name, 0);
  const out = el("output", {}, "0 σ");
  const range = el("input", {type: "range", min: -20, max: 20, step: 0.5, value: 0, "data-name": name});
  range.addEventListener("input", () => {
    S.inputAt = performance.now();
    const a = Number(range.value);
    S.edits.set(name, a);
    out.textContent = `${a > 0 ? "+" : ""}${a} σ`;
    scheduleRender();
  });
  const rm = el("button", {}, "×");
  const row = el("div", {class: "slider-row", "data-name": name},
    el("span", {class: "name"}, name), range, out, rm);
  rm.addEventListener("click", () => { S.edits.delete(name); row.remove(); scheduleRender(); });
  $("sliders").append(row);
}

// ------------------------------------------------------------------ catalogue browser

function layerOf(name) { return Number(name.split("_")[0]); }

function entryIndex() {
  const idx = new Map();
  for (const e of S.catalogue.entries) {
    if (!idx.has(e.name)) idx.set(e.name, []);
    idx.get(e.name).push(e);
  }
  return idx;
}

function fillSelectors() {
  const cat = $("category"), layer = $("layer");
  const keep = cat.value;
  cat.replaceChildren(el("option", {value: "*"}, "all categories"));
  for (const c of S.catalogue.categories) cat.append(el("option", {value: c}, c));
  cat.value = [...cat.options].some((o) => o.value === keep) ? keep : "*";
  if (!layer.options.length) {
    layer.append(el("option", {value: "*"}, "all layers"));
    for (const L of S.catalogue.layers)
      layer.append(el("option", {value: String(L.index)}, `${L.index}: ${L.name} (${L.channels})`));
  }
  const n = S.catalogue.entries.length;
  $("catalogue-note").textContent = S.catalogue.status === "measuring"
    ? "measuring locality on a few images…" : `${n} catalogued channel(s); ${S.catalogue.notes.join("; ")}`;
}

function itemFor(name, entries) {
  const item = el("div", {class: "channel-item", "data-name": name}, el("span", {class: "name"}, name));
  const L = S.catalogue.layers[layerOf(name)];
  item.append(el("span", {class: "measures"}, ` ${L.name}`));
  for (const e of entries || []) {
    item.append(el("span", {class: `badge ${e.verified ? "verified" : "detected"}`},
      `${e.verified ? "✓ " : ""}${e.category}`));
    const ms = Object.entries(e.measures).slice(0, 3).map(([k, v]) => `${k} ${v}`).join(", ");
    if (ms) item.append(el("div", {class: "measures"}, ms));
  }
  if (name === S.selected) item.classList.add("selected");
  item.addEventListener("click", () => pickChannel(name));
  return item;
}

function listChannels() {
  const idx = entryIndex();
  const q = $("search").value.trim(), cat = $("category").value, layer = $("layer").value;
  let names = [];
  if (q) {
    const m = q.match(/^(\d+)(?:_(\d*))?$/);
    if (m) for (const L of S.catalogue.layers) {
      for (let c = 0; c < L.channels && names.length < 300; c++) {
        const n = `${L.index}_${c}`;
        if (n === q || n.startsWith(m[2] === undefined ? `${q}_` : q)) names.push(n);
      }
    }
    names.sort((a, b) => (a === q ? -1 : b === q ? 1 : 0));
  } else if (cat !== "*" || layer === "*") {
    const seen = new Set();
    for (const e of S.catalogue.entries)
      if ((cat === "*" || e.category === cat) && (layer === "*" || layerOf(e.name) === Number(layer)) &&
          !seen.has(e.name)) { seen.add(e.name); names.push(e.name); }
  } else {
    const L = S.catalogue.layers[Number(layer)];
    const tagged = [], rest = [];
    for (let c = 0; c < L.channels; c++) (idx.has(`${L.index}_${c}`) ? tagged : rest).push(`${L.index}_${c}`);
    names = tagged.concat(rest);
  }
  const box = $("channel-list");
  box.replaceChildren(...names.slice(0, 300).map((n) => itemFor(n, idx.get(n))));
  if (!names.length) box.append(el("div", {class: "hint"}, q ? "no channel of that name" :
    "no catalogued channels here; pick a layer to list all of its channels"));
}

async function pickChannel(name) {
  S.selected = name;
  document.querySelectorAll(".channel-item").forEach((e) => e.classList.toggle("selected", e.dataset.name === name));
  addSlider(name);
  scheduleRender();
  const box = $("detail");
  box.replaceChildren(el("h2", {}, name), el("p", {class: "hint"}, "measuring…"));
  try {
    const d = await api("/api/channel", {name, image: S.sources[0]});
    const px = S.info.resolution * 2;
    const overlay = (src) => { const i = el("img", {class: "pixelated", src}); i.width = px; i.height = px; return i; };
    const base = document.querySelector(".image-card img.base");
    const stack = el("div", {class: "stack"}, overlay(base ? base.src : ""), overlay(d.map));
    stack.firstChild.className = "base";
    const rows = [["layer", d.layer], ["σ", d.sigma.toPrecision(4)]];
    if (d.locality) rows.push([`gradient inside ${d.locality.category}`,
      `${d.locality.gradient_share === null ? "–" : d.locality.gradient_share.toFixed(3)} (area ${d.locality.area_share.toFixed(3)})`]);
    for (const e of d.entries) for (const [k, v] of Object.entries(e.measures)) rows.push([`${e.category}: ${k}`, v]);
    const table = el("table", {}, ...rows.map(([k, v]) => el("tr", {}, el("td", {}, k), el("td", {}, String(v)))));
    const thumb = el("img", {class: "pixelated", src: d.thumbnail, id: "thumbnail"});
    box.replaceChildren(el("h2", {}, name), table, el("p", {}, "gradient map on the first image:"), stack);
    if (d.mean_map) {
      const mean = el("div", {class: "stack"}, overlay(base ? base.src : ""), overlay(d.mean_map));
      mean.firstChild.className = "base";
      box.append(el("p", {}, "mean gradient map (analysis images):"), mean);
    }
    box.append(el("p", {}, `edit α = ${d.thumbnail_alphas.join(", ")} σ:`), thumb);
  } catch (e) {
    box.replaceChildren(el("h2", {}, name), el("p", {class: "error"}, e.message));
  }
}

async function loadCatalogue() {
  S.catalogue = await api("/api/catalogue");
  fillSelectors();
  listChannels();
  if (S.catalogue.status === "measuring") setTimeout(loadCatalogue, 3000);
}

// ------------------------------------------------------------------ sources, upload, export

function showSeeds() {
  try {
    const psi = Number($("psi").value);
    const seeds = parseSeeds($("seeds").value);
    S.sources = seeds.map((seed) => ({seed, psi}));
    S.captions = seeds.map((s) => `seed ${s}, psi ${psi}`);
    buildImages();
    scheduleRender();
  } catch (e) { setStatus(e.message, "error"); }
}

async function upload() {
  const f = $("upload-file").files[0], msg = $("upload-msg");
  if (!f) { msg.textContent = "choose an image file first"; return; }
  if (f.size > S.info.upload.max_bytes) {
    msg.textContent = `file too large (limit ${S.info.upload.max_bytes / 1e6} MB)`; msg.className = "error"; return;
  }
  const form = new FormData();
  form.append("file", f); form.append("mode", $("upload-mode").value); form.append("steps", $("upload-steps").value);
  msg.textContent = "inverting…"; msg.className = "";
  try {
    const r = await fetch("/api/upload", {method: "POST", headers: {"X-Explorer": "1"}, body: form});
    const d = await r.json().catch(() => ({error: `HTTP ${r.status}`}));
    if (!r.ok) throw new Error(d.error);
    S.sources.push({upload: d.id});
    S.captions.push(`upload ${d.name} (${$("upload-mode").value}), MSE ${d.mse}`);
    if (S.sources.length > S.info.limits.images) { S.sources.shift(); S.captions.shift(); }
    msg.textContent = ["inverted"].concat(d.notes).join("; ") + ": original ";
    const small = (src) => { const i = el("img", {class: "pixelated", src}); i.width = 48; i.height = 48; return i; };
    msg.append(small(d.original), " reconstruction ", small(d.reconstruction));
    buildImages();
    scheduleRender();
  } catch (e) { msg.textContent = e.message; msg.className = "error"; }
}

async function exportEdit() {
  try {
    const d = await api("/api/export", {images: S.sources, edits: editsList()});
    const text = JSON.stringify(d.spec, null, 1);
    $("export-out").textContent = text;
    const links = $("export-links");
    links.replaceChildren();
    const blob = URL.createObjectURL(new Blob([text], {type: "application/json"}));
    links.append(el("a", {href: blob, download: "edit.json", id: "export-json-link"}, "edit.json"));
    d.images.forEach((src, i) => links.append(el("a", {href: src, download: `edit_${i}.png`, class: "export-png"},
      `edit_${i}.png`)));
    for (const a of links.querySelectorAll("a")) a.click();
    setStatus("exported", "ready");
  } catch (e) { setStatus(e.message, "error"); }
}

async function main() {
  try {
    S.info = await api("/api/info");
  } catch (e) { setStatus(e.message, "error"); return; }
  $("model-info").textContent = `${S.info.name}: ${S.info.resolution}px, ${S.info.num_channels} style channels; ` +
    `σ: ${S.info.sigma_source}`;
  if (!S.info.upload.available) {
    for (const id of ["upload-file", "upload-mode", "upload-steps", "upload-btn"]) $(id).disabled = true;
    $("upload-msg").textContent = S.info.upload.reason;
  }
  $("load-seeds").addEventListener("click", showSeeds);
  $("upload-btn").addEventListener("click", upload);
  $("search").addEventListener("input", listChannels);
  $("category").addEventListener("change", listChannels);
  $("layer").addEventListener("change", listChannels);
  $("show-delta").addEventListener("change", scheduleRender);
  $("show-outline").addEventListener("change", scheduleRender);
  $("export").addEventListener("click", exportEdit);
  $("reset").addEventListener("click", () => {
    for (const r of document.querySelectorAll("#sliders input[type=range]")) {
      r.value = 0; r.dispatchEvent(new Event("input"));
    }
  });
  showSeeds();
  await loadCatalogue();
}

document.addEventListener("DOMContentLoaded", main);
