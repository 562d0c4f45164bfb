// The Olla dashboard. It polls /internal/ui/data (the server answers 304
// while nothing changed) and renders with DOM calls and textContent only:
// model names and reasons come from backends and clients, so nothing they
// say is ever parsed as markup.
"use strict";

const DATA = "/internal/ui/data";
const POLL_MS = 2000;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const c of children) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

// statusOf is the one word a card shows: drained beats health.
function statusOf(e) {
  if (e.drained) return "drained";
  return e.status || "unknown";
}

// backendLoad is the backend's own view of its load, from its load surface
// (/metrics, /slots, /api/ps): what it runs, what waits, its KV cache.
function backendLoad(sig) {
  if (!sig || sig.polling === "off") return "not polled";
  if (!sig.fresh) return sig.problem ? "no signal: " + sig.problem : "no signal yet";
  const parts = [];
  if (sig.running !== undefined) parts.push(sig.running + (sig.slots ? " of " + sig.slots : "") + " running");
  if (sig.waiting !== undefined) parts.push(sig.waiting + " waiting");
  if (sig.kv_usage !== undefined) parts.push("KV " + Math.round(sig.kv_usage * 100) + "%");
  if (sig.warm_models && !parts.length) parts.push(sig.warm_models.length + " model(s) resident");
  return parts.length ? parts.join(", ") : "signal without load figures";
}

// preloadLine sums up an endpoint's preload list: how many of its models
// are resident, or why preloading waits or stopped.
function preloadLine(p) {
  if (!p) return null;
  const wanted = p.models.filter((m) => m.state !== "skipped");
  const resident = wanted.filter((m) => m.state === "resident").length;
  const line = p.state + ": " + resident + " of " + wanted.length + " resident";
  return p.reason ? line + " (" + p.reason + ")" : line;
}

function ms(v) { return v === undefined || v === null ? "–" : v + " ms"; }

function renderEndpoints(list) {
  const root = document.getElementById("endpoints");
  const cards = list.map((e) => {
    const st = statusOf(e);
    const dl = el("dl", {},
      el("dt", {}, "type"), el("dd", {}, e.type),
      el("dt", {}, "reason"), el("dd", {}, e.reason || "–"),
      el("dt", {}, "breaker"), el("dd", {}, e.circuit_breaker),
      el("dt", {}, "in flight"), el("dd", {}, e.max_concurrency ? e.in_flight + " of " + e.max_concurrency : e.in_flight),
      el("dt", {}, "backend"), el("dd", { class: "backend-load" }, backendLoad(e.signals)),
      e.preload ? el("dt", {}, "preload") : null,
      e.preload ? el("dd", { class: "preload " + e.preload.state }, preloadLine(e.preload)) : null,
      el("dt", {}, "TTFT p50"), el("dd", {}, ms(e.ttft_p50_ms)),
      el("dt", {}, "tokens/s"), el("dd", {}, e.tokens_per_second ? e.tokens_per_second.toFixed(1) : "–"),
      el("dt", {}, "requests"), el("dd", {}, e.request_count + " (" + e.success_rate + " ok)"));
    const models = el("div", { class: "models" });
    const warm = new Set(e.warm_models || []);
    const preloaded = new Map(((e.preload && e.preload.models) || []).map((p) => [p.listed_as || p.model, p.state]));
    for (const m of e.models) {
      const attrs = warm.has(m) ? { class: "chip warm", title: "resident now" } : { class: "chip" };
      if (preloaded.has(m)) {
        attrs.class += " preloaded";
        attrs.title = (attrs.title ? attrs.title + "; " : "") + "preloaded: " + preloaded.get(m);
      }
      models.append(el("span", attrs, m));
    }
    if (e.models_total > e.models.length) models.append(el("span", { class: "muted" }, "+" + (e.models_total - e.models.length) + " more"));
    return el("article", { class: "card " + st, "data-endpoint": e.name, "data-status": st },
      el("h3", {}, el("span", {}, e.name), el("span", { class: "badge " + st }, st)), dl, models);
  });
  root.replaceChildren(...cards);
}

function renderModels(catalogue, truncated) {
  const body = document.querySelector("#models tbody");
  const rows = catalogue.map((m) => el("tr", { "data-model": m.id }, el("td", {}, m.id), el("td", {}, m.endpoints.join(", "))));
  if (truncated) rows.push(el("tr", {}, el("td", { colspan: "2", class: "muted" }, "more models than shown")));
  body.replaceChildren(...rows);
}

function renderRecent(list) {
  const body = document.querySelector("#recent tbody");
  body.replaceChildren(...list.map((r) => el("tr", {},
    el("td", {}, new Date(r.time).toLocaleTimeString()),
    el("td", {}, r.model || "–"),
    el("td", {}, r.endpoint || "–"),
    el("td", r.status >= 400 ? { class: "bad" } : {}, r.status),
    el("td", {}, r.ttft_ms ? r.ttft_ms + " ms" : "–"),
    el("td", {}, r.tokens_out ? r.tokens_in + " → " + r.tokens_out : "–"),
    el("td", {}, r.reason || "–"))));
}

// renderUsage fills the usage panel (key_limits only): keys are hashes.
function renderUsage(u) {
  const panel = document.getElementById("usage-panel");
  panel.hidden = !u;
  if (!u) return;
  const body = document.querySelector("#usage tbody");
  body.replaceChildren(...u.keys.map((k) => el("tr", { "data-key": k.name },
    el("td", {}, k.name),
    el("td", {}, k.requests),
    el("td", {}, k.input_tokens),
    el("td", {}, k.output_tokens),
    el("td", {}, k.cached_tokens),
    el("td", {}, Math.round(k.cost * 1e6) / 1e6),
    el("td", {}, k.estimated_requests),
    el("td", k.refused ? { class: "bad" } : {}, (k.refused || 0) + (k.would_refuse ? " (+" + k.would_refuse + " shadow)" : "")))));
}

// renderPrefix fills the prefix cache panel (prefix affinity only): each
// endpoint's index against its budget, and its hit ratio, the share of the
// requests it served that found more than the shared system prompt held.
function renderPrefix(list) {
  const panel = document.getElementById("prefix-panel");
  panel.hidden = !list;
  if (!list) return;
  const body = document.querySelector("#prefix tbody");
  body.replaceChildren(...list.map((p) => {
    const share = p.budget ? Math.round((p.blocks / p.budget) * 100) : 0;
    const from = p.budget_from === "backend" ? "sized by the backend's KV cache (" + p.backend_cache_tokens + " tokens)"
      : p.budget_from === "cache_blocks" ? "cache_blocks" : "default budget";
    return el("tr", { "data-endpoint": p.endpoint },
      el("td", {}, p.endpoint),
      el("td", { class: "index", title: from },
        el("meter", { min: "0", max: String(p.budget || 1), value: String(p.blocks) }),
        " " + p.blocks + " of " + p.budget + " blocks (" + share + "%)"),
      el("td", { class: "hit-ratio" }, p.routed ? Math.round(p.request_hit_ratio * 100) + "% (" + p.held + " of " + p.routed + ")" : "–"),
      el("td", {}, p.released),
      el("td", {}, p.forgets));
  }));
}

function chart(id, points, key, lastId, unit) {
  const svg = document.getElementById(id);
  const values = points.map((p) => p[key] || 0);
  const peak = Math.max(0, ...values);
  const top = Math.max(1, peak);
  const step = values.length > 1 ? 240 / (values.length - 1) : 0;
  const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
  line.setAttribute("points", values.map((v, i) => (i * step).toFixed(1) + "," + (58 - (v / top) * 56).toFixed(1)).join(" "));
  svg.replaceChildren(line);
  const last = values.length ? values[values.length - 1] : 0;
  document.getElementById(lastId).textContent = "now " + (Math.round(last * 10) / 10) + unit + ", peak " + (Math.round(peak * 10) / 10) + unit;
}

function render(d) {
  const up = d.endpoints.filter((e) => e.routable).length;
  const waiting = d.queue && d.queue.depth ? ", " + d.queue.depth + " waiting" : "";
  document.getElementById("summary").textContent = up + " of " + d.endpoints.length + " endpoints routable, " + d.catalogue.length + " models" + waiting;
  // the time of this poll: while nothing changes the server answers 304
  // and the browser hands back the body it has, with the time it had then
  document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
  renderEndpoints(d.endpoints);
  renderModels(d.catalogue, d.catalogue_truncated);
  renderRecent(d.recent);
  renderUsage(d.usage);
  renderPrefix(d.prefix);
  chart("chart-rps", d.timeline, "rps", "last-rps", "/s");
  chart("chart-ttft", d.timeline, "ttft_ms", "last-ttft", " ms");
  chart("chart-queue", d.timeline, "queue", "last-queue", "");
}

async function poll() {
  try {
    const res = await fetch(DATA, { cache: "no-cache", headers: { Accept: "application/json" } });
    if (res.ok) render(await res.json());
    else document.getElementById("summary").textContent = "status route answered " + res.status;
  } catch (err) {
    document.getElementById("summary").textContent = "cannot reach the proxy: " + err.message;
  }
  setTimeout(poll, POLL_MS);
}

poll();
