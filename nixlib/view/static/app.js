// nw view: the page. Reads the read-only JSON API of `nw view` and draws a run with Cytoscape.js + dagre.
// Every string from the store is put in the page with textContent, never as HTML.
"use strict";

const COLORS = { done: "#2e9d57", cached: "#3a7bd5", running: "#e0a100", failed: "#d23b3b", skipped: "#9aa0a6",
  pending: "#d7dbe0", interrupted: "#e07b39", gone: "#8e7cc3", unknown: "#c7c7c7" };
const RANK = ["failed", "running", "interrupted", "pending", "skipped", "gone", "done", "cached", "unknown"];
const state = { runs: [], runId: null, chosen: false, run: null, view: "recipe", group: false, expanded: new Set(),
  selected: null, signature: "", logTimer: null };
const $ = (id) => document.getElementById(id);
const AUTO_GROUP = 250; // nodes

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "text") e.textContent = v; else if (k === "onclick") e.onclick = v; else e.setAttribute(k, v);
  }
  for (const k of kids) if (k !== null && k !== undefined) e.append(k);
  return e;
}

async function api(path) {
  const r = await fetch(path, { cache: "no-store" });
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}
const q = (params) => new URLSearchParams(params).toString();
const short = (h) => (h ? h.slice(0, 10) : "");
const when = (t) => (t ? new Date(t * 1000).toLocaleString() : "–");

// ---- graph model: the run's nodes -> the elements of the current view --------------------------------------------

function groupOf(name) {
  const m = /^([^_\-.:/]+)[_\-.:/]/.exec(name);
  return m ? m[1] : null;
}

function objectKey(node) {
  return node.outputs ? "o:" + Object.values(node.outputs).sort().join("+") : "s:" + node.id;
}

function merged(statuses) {
  return RANK.find((s) => statuses.includes(s)) || "unknown";
}

function model() {
  const nodes = state.run ? state.run.nodes : [];
  const byId = new Map(nodes.map((n) => [n.id, n]));
  // base: recipe view = one per step; content view = one per output object (identical bytes merge)
  const base = new Map(); // base key -> {members: [node]}
  const baseOf = new Map();
  for (const n of nodes) {
    const k = state.view === "content" ? objectKey(n) : "s:" + n.id;
    baseOf.set(n.id, k);
    if (!base.has(k)) base.set(k, { members: [] });
    base.get(k).members.push(n);
  }
  // grouping: steps sharing a name prefix collapse into one node unless that group is expanded
  const counts = new Map();
  for (const n of nodes) { const g = groupOf(n.name); if (g) counts.set(g, (counts.get(g) || 0) + 1); }
  const shown = (k) => {
    const first = base.get(k).members[0];
    const g = state.group ? groupOf(first.name) : null;
    return g && counts.get(g) > 1 && !state.expanded.has(g) ? "g:" + g : k;
  };
  const elements = new Map();
  for (const [k, b] of base) {
    const id = shown(k);
    if (!elements.has(id)) elements.set(id, { id, members: [], kind: id.slice(0, 1) });
    elements.get(id).members.push(...b.members);
  }
  const edges = new Map();
  for (const n of nodes) {
    for (const u of n.upstream || []) {
      if (!byId.has(u)) continue;
      const s = shown(baseOf.get(u)), t = shown(baseOf.get(n.id));
      // "e:" + JSON: never a node's id (s:/g:/o:) nor another edge's, whatever "->" or quotes the names hold
      const id = "e:" + JSON.stringify([s, t]);
      if (s !== t) edges.set(id, { id, source: s, target: t });
    }
  }
  for (const e of elements.values()) {
    const names = [...new Set(e.members.map((m) => m.name))];
    e.status = merged(e.members.map((m) => m.status));
    if (e.kind === "g") e.label = `${e.id.slice(2)} ×${e.members.length}`;
    else if (e.kind === "o") {
      const more = names.length > 4 ? [`+${names.length - 3} more`] : [];
      e.label = [...names.slice(0, more.length ? 3 : 4), ...more, short(Object.values(e.members[0].outputs)[0])].join("\n");
    }
    else e.label = names[0];
  }
  return { elements: [...elements.values()], edges: [...edges.values()] };
}

// ---- drawing --------------------------------------------------------------------------------------------------------

function labelLines(n) { return String(n.data("label") || "").split("\n"); }
function labelWidth(n) { return Math.max(40, ...labelLines(n).map((l) => l.length * 6.6)) + 18; }
function labelHeight(n) { return labelLines(n).length * 14 + 14; }

const cy = cytoscape({
  container: $("graph"),
  maxZoom: 2.5,
  minZoom: 0.05,
  style: [
    { selector: "node", style: { shape: "round-rectangle", "background-color": (n) => COLORS[n.data("status")] || COLORS.unknown,
      label: "data(label)", "text-wrap": "wrap", "text-valign": "center", "font-size": 11, color: "#fff",
      "text-outline-width": 0, width: labelWidth, height: labelHeight, "border-width": 1, "border-color": "rgba(0,0,0,0.25)" } },
    { selector: 'node[status = "pending"], node[status = "unknown"]', style: { color: "#1d232a" } },
    { selector: 'node[kind = "g"]', style: { shape: "round-rectangle", "border-width": 3, "border-style": "double" } },
    { selector: 'node[kind = "o"]', style: { shape: "round-hexagon" } },
    { selector: 'node[status = "running"]', style: { "border-width": 3, "border-color": "#8a6300" } },
    { selector: "edge", style: { width: 1.5, "line-color": "#9aa5b1", "target-arrow-color": "#9aa5b1",
      "target-arrow-shape": "triangle", "curve-style": "bezier" } },
    { selector: ".faded", style: { opacity: 0.28 } },
    { selector: "node.up, node.down", style: { "border-width": 3, "border-color": "#1d232a" } },
    { selector: "edge.up", style: { "line-color": "#1f5fbf", "target-arrow-color": "#1f5fbf", width: 3 } },
    { selector: "edge.down", style: { "line-color": "#d2691e", "target-arrow-color": "#d2691e", width: 3 } },
    { selector: "node.picked", style: { "border-width": 4, "border-color": "#000" } },
    { selector: "node.match", style: { "border-width": 4, "border-color": "#ff00aa" } },
  ],
});
window.nwView = { cy, state }; // for tests and the curious: the graph and the page state

function draw(polled = false) {
  const m = model();
  const signature = JSON.stringify([state.view, m.elements.map((e) => e.id).sort(), m.edges.map((e) => e.id).sort()]);
  if (signature === state.signature) { // same shape: update colours and labels in place, no relayout
    for (const e of m.elements) cy.$id(e.id).data({ status: e.status, label: e.label, members: e.members });
  } else {
    state.signature = signature;
    cy.elements().remove();
    cy.add(m.elements.map((e) => ({ group: "nodes", data: { id: e.id, label: e.label, status: e.status, kind: e.kind, members: e.members } })));
    cy.add(m.edges.map((e) => ({ group: "edges", data: e })));
    const moved = polled && state.fitted && (cy.zoom() !== state.fitted.zoom || cy.pan().x !== state.fitted.pan.x ||
      cy.pan().y !== state.fitted.pan.y); // the user zoomed or panned this run's graph: a live run's new shape
    const viewport = moved ? { zoom: cy.zoom(), pan: { ...cy.pan() } } : null; // (Content view) keeps their view
    cy.layout({ name: "dagre", rankDir: "LR", nodeSep: 18, rankSep: 60, animate: false }).run();
    if (viewport) cy.viewport(viewport); else fit();
  }
  const counts = Object.fromEntries(Object.keys(COLORS).map((k) => [k, 0])); // the legend's order: a live run's
  for (const n of state.run ? state.run.nodes : []) counts[n.status] = (counts[n.status] || 0) + 1; // line stays put
  $("counts").textContent = Object.entries(counts).filter(([, v]) => v).map(([k, v]) => `${k} ${v}`).join(" · ");
  $("message").hidden = m.elements.length > 0;
  $("message").textContent = "No steps in this run.";
  $("live").hidden = !(state.run && state.run.live);
  if (state.selected && cy.$id(state.selected).length) highlight(cy.$id(state.selected), false);
  applySearch();
}

function highlight(node, panel = true) {
  cy.elements().removeClass("up down faded picked");
  if (!node || !node.length) return;
  const up = node.predecessors(), down = node.successors();
  cy.elements().not(up).not(down).not(node).addClass("faded");
  up.addClass("up"); down.addClass("down"); node.addClass("picked");
  state.selected = node.id();
  if (panel) showPanel(node);
}

cy.on("tap", "node", (ev) => {
  const node = ev.target;
  if (node.data("kind") === "g") { state.expanded.add(node.id().slice(2)); draw(); return; }
  highlight(node);
});
cy.on("tap", (ev) => { if (ev.target === cy) { highlight(null); state.selected = null; } });

// ---- the step panel -------------------------------------------------------------------------------------------------

function section(title, ...kids) { return [el("h3", { text: title }), ...kids]; }

function showPanel(node) {
  clearInterval(state.logTimer);
  const panel = $("panel");
  panel.replaceChildren();
  const members = node.data("members") || [];
  if (members.length) { // re-drawn on a change only; `step` finds its node again if that node's id changes
    panel.dataset.shown = `${members[0].name}|${members[0].status}`; panel.dataset.step = members[0].name;
  }
  panel.dataset.run = state.run ? state.run.id : ""; // the run it shows: another run's graph re-draws or clears it
  if (node.data("kind") === "o") {
    panel.append(el("h2", { text: members.map((m) => m.name).join(" = ") }));
    panel.append(el("p", { class: "hint", text: `${members.length} step(s) produced these identical bytes.` }));
    for (const m of members) panel.append(el("div", {}, el("a", { class: "link", text: m.name, onclick: () => openStep(m) })));
    const outputs = members[0].outputs || {}, missing = members[0].missing || {};
    for (const [name, h] of Object.entries(outputs)) {
      panel.append(...section(`files of ${name}`, name in missing ? missingNote(name, missing[name]) : fileBrowser(h)));
    }
    return;
  }
  openStep(members[0]);
}

function openStep(step) {
  clearInterval(state.logTimer);
  const panel = $("panel");
  panel.replaceChildren(el("h2", { text: step.name }),
    el("span", { class: "badge", style: `background:${COLORS[step.status] || COLORS.unknown}`, text: step.status }));
  if (step.error) panel.append(el("p", { class: "error", text: step.error }));
  const details = el("div");
  panel.append(details);
  const logBox = el("pre", { class: "log", text: "…" });
  if (step.resolved_key && (["done", "cached"].includes(step.status) || step.missing)) { // (missing: marked there)
    api("/api/step?" + q({ key: step.resolved_key })).then((d) => renderDetails(details, d)).catch((e) => {
      details.append(el("p", { class: "error", text: String(e.message) }));
    });
  } else {
    details.append(el("dl", {}, el("dt", { text: "started" }), el("dd", { text: when(step.start) }),
      el("dt", { text: "ended" }), el("dd", { text: when(step.end) })));
  }
  panel.append(...section("log (tail)", logBox));
  const refresh = () => {
    if (!step.resolved_key) { logBox.textContent = "(no log: the step did not start)"; return; }
    api("/api/log?" + q({ key: step.resolved_key })).then((l) => {
      const stick = logBox.scrollTop + logBox.clientHeight >= logBox.scrollHeight - 4;
      logBox.textContent = l.missing ? "(no log found)" : (l.truncated ? "…\n" : "") + l.text;
      if (stick) logBox.scrollTop = logBox.scrollHeight;
    }).catch((e) => { logBox.textContent = String(e.message); });
  };
  refresh();
  if (step.status === "running") state.logTimer = setInterval(refresh, 1000);
}

function renderDetails(box, d) {
  const dl = el("dl");
  const row = (k, v) => dl.append(el("dt", { text: k }), el("dd", { text: v }));
  row("started", when(d.start)); row("ended", when(d.end)); row("duration", `${d.duration.toFixed(2)} s`);
  row("host", d.host); row("user", d.user); row("tool", d.tool);
  row("resolved key", d.resolved_key); row("recipe key", d.recipe_key);
  box.append(dl);
  box.append(...section("command (as executed)", el("pre", { class: "command", text: d.command })));
  if (d.canonical) box.append(...section("command (canonical, as keyed)", el("pre", { text: d.canonical })));
  const env = el("ul", { class: "plain" });
  for (const p of d.env.paths) env.append(el("li", { class: "hash", text: p }));
  if (!d.env.paths.length) env.append(el("li", { text: `(${d.env.identity.kind || "no"} environment)` }));
  box.append(...section("environment store paths", env));
  const inputs = el("ul", { class: "plain" });
  for (const i of d.inputs) {
    const li = el("li");
    if (i.step) li.append(el("a", { class: "link", text: `${i.step}/${i.output || "out"}`, onclick: () => selectInput(i) }), " ");
    else li.append("static ");
    li.append(el("span", { class: "hash", text: i.object }));
    inputs.append(li);
  }
  for (const [name, h] of Object.entries(d.files)) inputs.append(el("li", { text: `${name} ` }, el("span", { class: "hash", text: h })));
  if (!inputs.children.length) inputs.append(el("li", { text: "(none)" }));
  box.append(...section("inputs", inputs));
  const missing = d.missing_outputs || {};
  for (const [name, h] of Object.entries(d.outputs)) {
    box.append(...section(`output ${name}`, el("div", { class: "hash", text: h }),
      name in missing ? missingNote(name, missing[name]) : fileBrowser(h)));
  }
  if (Object.keys(d.provenance || {}).length) box.append(...section("provenance", el("pre", { text: JSON.stringify(d.provenance, null, 2) })));
}

// an output the store no longer holds (quarantined, removed): said so, never offered as files
function missingNote(name, why) {
  return el("p", { class: "error missing", text: `output ${name} is no longer in the store: ${why}. It is not ` +
    "served; the next run that needs it runs the step again." });
}

function reveal(node) { // scroll the graph to a node only if it is out of view
  const p = node.renderedPosition(), w = cy.width(), h = cy.height();
  if (p.x < 0 || p.y < 0 || p.x > w || p.y > h) cy.center(node);
}

// an input's producer: the realisation that made it (by its key, else by the object it made), not merely the first
// node of that name (the store view holds every realisation of a step: an older one made other bytes)
function selectInput(input) {
  const has = (pred) => cy.nodes().filter((n) => (n.data("members") || []).some(pred));
  const node = [has((m) => input.resolved_key && m.resolved_key === input.resolved_key),
    has((m) => m.name === input.step && Object.values(m.outputs || {}).includes(input.object)),
    has((m) => m.name === input.step)].find((c) => c.length);
  if (node) { highlight(node.first()); reveal(node.first()); }
}

// ---- file browser of an output object --------------------------------------------------------------------------------

// A path inside an object is a list of {name, ref}: `name` is what the page shows, `ref` the file name's bytes
// percent-encoded as the server hands them out (a name need not be UTF-8: a string would turn such a byte into
// U+FFFD and ask for a file that does not exist). Refs go into the query as they are.
const pathQuery = (object, parts) => q({ object }) + "&path=" + parts.map((p) => p.ref).join("/");
const pathText = (parts) => parts.map((p) => p.name).join("/");

function fileBrowser(object) {
  const box = el("div", { class: "files" });
  const go = (parts) => {
    api("/api/files?" + pathQuery(object, parts)).then((f) => {
      box.replaceChildren(crumbs(parts, go));
      if (f.type === "dir") {
        const ul = el("ul", { class: "plain" });
        for (const e of f.entries) {
          const child = [...parts, { name: e.name, ref: e.ref }];
          ul.append(el("li", {}, el("a", { class: "link", text: e.name + (e.type === "dir" ? "/" : ""), onclick: () => go(child) }),
            el("span", { class: "hash", text: e.type === "file" ? `  ${e.size} B` : e.type === "symlink" ? "  (symlink)" : "" })));
        }
        if (!f.entries.length) ul.append(el("li", { text: "(empty)" }));
        box.append(ul);
      } else box.append(preview(f, object, parts));
    }).catch((e) => box.replaceChildren(crumbs(parts, go), el("p", { class: "error", text: String(e.message) })));
  };
  go([]);
  return box;
}

function crumbs(parts, go) {
  const c = el("div", { class: "crumbs" }, el("a", { class: "link", text: "out", onclick: () => go([]) }));
  parts.forEach((part, i) => c.append(" / ", el("a", { class: "link", text: part.name, onclick: () => go(parts.slice(0, i + 1)) })));
  return c;
}

function preview(f, object, parts) {
  if (f.type === "symlink") return el("p", { text: `symbolic link → ${f.target} (not followed)` });
  if (f.preview === "image") return el("img", { class: "preview", alt: pathText(parts), src: "/api/raw?" + pathQuery(object, parts) });
  if (f.preview === "binary") return el("p", { text: `binary file, ${f.size} bytes` });
  if (f.preview === "table") {
    const t = el("table", { class: "preview" });
    f.rows.forEach((r, i) => t.append(el("tr", {}, ...r.map((c) => el(i ? "td" : "th", { text: c })))));
    return el("div", {}, t, f.more ? el("p", { class: "hint", text: "(first rows only)" }) : null);
  }
  return el("pre", { class: "preview " + f.preview, text: f.text + (f.more ? "\n… (truncated)" : "") });
}

// ---- search, export, runs, polling ----------------------------------------------------------------------------------

function applySearch() {
  const term = $("search").value.trim().toLowerCase();
  cy.nodes().removeClass("match");
  if (!term) return null;
  const hits = cy.nodes().filter((n) => (n.data("members") || []).some((m) => m.name.toLowerCase().includes(term)));
  hits.addClass("match");
  return hits;
}
$("search").addEventListener("input", applySearch);
$("search").addEventListener("keydown", (ev) => {
  if (ev.key !== "Enter") return;
  const hits = applySearch();
  if (hits && hits.length) { highlight(hits.first()); reveal(hits.first()); }
});

function download(href, name) { const a = el("a", { href, download: name }); document.body.append(a); a.click(); a.remove(); }
$("export-png").onclick = () => download(cy.png({ full: true, scale: 2, bg: "#ffffff" }), `nw-${state.view}.png`);
$("export-svg").onclick = () => {
  const box = cy.elements().boundingBox(), pad = 20;
  const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]));
  const parts = [`<svg xmlns="http://www.w3.org/2000/svg" width="${box.w + 2 * pad}" height="${box.h + 2 * pad}" ` +
    `viewBox="${box.x1 - pad} ${box.y1 - pad} ${box.w + 2 * pad} ${box.h + 2 * pad}" font-family="sans-serif" font-size="11">`,
    '<defs><marker id="a" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto">' +
    '<path d="M0 0L10 5L0 10z" fill="#9aa5b1"/></marker></defs>'];
  cy.edges().forEach((e) => {
    const s = e.sourceEndpoint(), t = e.targetEndpoint();
    parts.push(`<line x1="${s.x}" y1="${s.y}" x2="${t.x}" y2="${t.y}" stroke="#9aa5b1" stroke-width="1.5" marker-end="url(#a)"/>`);
  });
  cy.nodes().forEach((n) => {
    const b = n.boundingBox({ includeLabels: false }), lines = String(n.data("label")).split("\n");
    parts.push(`<rect x="${b.x1}" y="${b.y1}" width="${b.w}" height="${b.h}" rx="6" fill="${COLORS[n.data("status")] || COLORS.unknown}"/>`);
    lines.forEach((l, i) => parts.push(`<text x="${n.position("x")}" y="${n.position("y") + (i - (lines.length - 1) / 2) * 13 + 4}" ` +
      `text-anchor="middle" fill="#fff">${esc(l)}</text>`));
  });
  parts.push("</svg>");
  download(URL.createObjectURL(new Blob([parts.join("\n")], { type: "image/svg+xml" })), `nw-${state.view}.svg`);
};
function fit() { // whole graph in view, but a small graph is not blown up past a readable size
  cy.fit(undefined, 30);
  if (cy.zoom() > 1.4) { cy.zoom(1.4); cy.center(); }
  state.fitted = { zoom: cy.zoom(), pan: { ...cy.pan() } };
}
$("fit").onclick = fit;

function setView(view) {
  state.view = view;
  $("view-recipe").classList.toggle("on", view === "recipe");
  $("view-content").classList.toggle("on", view === "content");
  state.selected = null;
  draw();
}
$("view-recipe").onclick = () => setView("recipe");
$("view-content").onclick = () => setView("content");
$("group").onchange = (ev) => { state.group = ev.target.checked; state.expanded.clear(); draw(); };
$("run").onchange = (ev) => { state.runId = ev.target.value; state.chosen = true; loadRun(); };

function runLabel(r) {
  if (r.id === "store" || r.id === "last") return r.label;
  const counts = Object.entries(r.counts || {}).map(([k, v]) => `${v} ${k}`).join(", ");
  const tool = r.label && r.label !== "nw run" ? `${r.label}: ` : ""; // Snakemake and Luigi runs say so
  return `${tool}${when(r.started)}${r.live ? " (running)" : ""} — ${r.steps} steps: ${counts}`;
}

async function loadRuns() {
  state.runs = await api("/api/runs");
  const select = $("run");
  const current = state.runId;
  select.replaceChildren(...state.runs.map((r) => el("option", { value: r.id, text: runLabel(r) })));
  if (!state.chosen || !state.runs.some((r) => r.id === current)) state.runId = state.runs[0].id; // follow the newest run
  select.value = state.runId;
  if (state.runId !== current) await loadRun();
}

async function loadRun() {
  const first = !state.run || state.run.id !== state.runId;
  try {
    state.run = await api("/api/run?" + q({ id: state.runId }));
    if (first && state.run.nodes.length > AUTO_GROUP) { // a big graph opens grouped; untick "group" to see all
      state.group = true; state.expanded.clear(); $("group").checked = true;
    }
  } catch (e) {
    state.run = null; $("message").hidden = false; $("message").textContent = String(e.message); return;
  }
  draw(!first);
  const panel = $("panel");
  let node = state.selected ? cy.$id(state.selected) : cy.collection();
  if (!node.length && state.selected && panel.dataset.step !== undefined) { // its node's id changed (Content view:
    node = nodeOfStep(panel.dataset.step); // a step that finished joins its output object's node): follow the step
    if (node.length) highlight(node, false);
  }
  const step = node.length ? (node.data("members") || [])[0] : null;
  if (panel.dataset.run !== undefined && panel.dataset.run !== state.run.id) { // it shows another run's step:
    if (step) showPanel(node); else clearPanel(); // this run's step of that name, or nothing
  } else if (step && panel.dataset.shown !== `${step.name}|${step.status}`) showPanel(node);
}

function nodeOfStep(name) {
  return cy.nodes().filter((n) => (n.data("members") || []).some((m) => m.name === name)).first();
}

const HINT = [...$("panel").childNodes].map((n) => n.cloneNode(true));
function clearPanel() {
  clearInterval(state.logTimer);
  const panel = $("panel");
  panel.replaceChildren(...HINT.map((n) => n.cloneNode(true)));
  delete panel.dataset.run; delete panel.dataset.shown; delete panel.dataset.step;
  state.selected = null;
}

let tick = 0;
setInterval(async () => {
  tick += 1;
  try {
    if (state.run && state.run.live) await loadRun();
    if (tick % 3 === 0) await loadRuns();
  } catch (e) { /* the server may be restarting: try again next tick */ }
}, 1000);

loadRuns().catch((e) => { $("message").hidden = false; $("message").textContent = String(e.message); });
$("legend").replaceChildren(...Object.entries(COLORS).map(([k, c]) => el("span", {}, el("i", { style: `background:${c}` }), k)));
