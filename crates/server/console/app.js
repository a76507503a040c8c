// The Kiln console: a page per hash route (#/functions, #/functions/NAME,
// #/usage, #/tokens, #/tenants, #/cluster) over the /v1 API, authenticated by
// the session cookie that POST /console/session sets. Everything a server, a
// tenant or a guest wrote is set as text (textContent, never innerHTML), so
// names, env values and log lines cannot inject markup.
"use strict";

const $ = (id) => document.getElementById(id);
const PAGE = 50;
const VIEWS = ["sign-in-view", "functions-view", "function-view", "usage-view",
  "tokens-view", "tenants-view", "cluster-view"];

let who = null;          // {admin, tenant} once signed in
let generation = 0;      // bumps on every navigation: stale work stops
let chart = null;

// --- helpers ---------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(method, path, body) {
  const response = await fetch(path, {
    method,
    credentials: "same-origin",
    headers: body === undefined ? {} : { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
  if (!response.ok) {
    throw new ApiError(response.status, (data && data.error) || text || response.statusText);
  }
  return data;
}

// An element with attributes and children; strings become text nodes.
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

function row(...cells) {
  return el("tr", {}, ...cells.map((c) => el("td", {}, c)));
}

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

function when(seconds) {
  return new Date(seconds * 1000).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
}

function money(x, currency) {
  const digits = x === 0 || x >= 1 ? x.toFixed(2) : x.toPrecision(3);
  return `${digits} ${currency}`;
}

function showError(e) {
  const box = $("error");
  if (!e) { box.hidden = true; box.textContent = ""; return; }
  box.textContent = e.message || String(e);
  box.hidden = false;
}

async function copy(text, button) {
  try {
    await navigator.clipboard.writeText(text);
    button.textContent = "Copied";
  } catch (e) {
    button.textContent = "Select and copy";
  }
  setTimeout(() => { button.textContent = "Copy"; }, 2000);
}

function show(view) {
  for (const id of VIEWS) $(id).hidden = id !== view;
  const signedIn = view !== "sign-in-view";
  $("sign-out").hidden = !signedIn;
  $("nav").hidden = !signedIn;
  for (const li of document.querySelectorAll(".admin-only")) li.hidden = !(who && who.admin);
  for (const li of document.querySelectorAll(".tenant-only")) li.hidden = !(who && !who.admin);
  for (const a of document.querySelectorAll("#nav a")) {
    const current = location.hash.startsWith(a.getAttribute("href"));
    if (current) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
}

const KINDS = { module: "module", component: "component", "http-component": "wasi:http" };

function kindOf(version) {
  const config = version.config;
  const kind = config.script ? config.script.language : (KINDS[version.kind] || "wasm");
  if (config.stream) return `${kind}, streamed`;
  if (config.cgi && !config.script) return `${kind}, CGI`;
  return kind;
}

function functionUrl(name) {
  return `${location.origin}/fn/${who.tenant}/${name}`;
}

// --- sign-in and sign-up -----------------------------------------------------

async function signInView() {
  show("sign-in-view");
  $("new-token").hidden = true;
  try {
    const settings = await api("GET", "/console/config");
    $("signup-open").hidden = !settings.signup;
    $("signup-closed").hidden = settings.signup;
  } catch (e) {
    $("signup-closed").hidden = false;
  }
  $("token").focus();
}

// --- functions ---------------------------------------------------------------

const cursors = [""];    // `after` of each page seen, for Previous

async function functionsView(mine) {
  show("functions-view");
  const page = cursors.length - 1;
  const after = cursors[page];
  const query = `limit=${PAGE + 1}` + (after ? `&after=${encodeURIComponent(after)}` : "");
  const hourAgo = Math.floor(Date.now() / 1000) - 3600;
  const [functions, usage] = await Promise.all([
    api("GET", `/v1/functions?${query}`),
    api("GET", `/v1/usage?by=function&since=${hourAgo}`),
  ]);
  if (mine !== generation) return;
  const requests = new Map(usage.rows.map((r) => [r.function, r.requests]));
  const body = $("functions");
  body.replaceChildren(...functions.slice(0, PAGE).map((f) => row(
    el("a", { href: `#/functions/${encodeURIComponent(f.name)}`, text: f.name }),
    kindOf(f.current),
    String(f.current.number),
    bytes(f.current.size),
    String(requests.get(f.name) || 0),
  )));
  $("no-functions").hidden = functions.length > 0 || page > 0;
  const more = functions.length > PAGE;
  $("functions-next").hidden = !more;
  $("functions-prev").hidden = page === 0;
  $("functions-page").textContent = more || page > 0 ? `page ${page + 1}` : "";
  $("functions-next").onclick = () => {
    cursors.push(functions[PAGE - 1].name);
    route();
  };
  $("functions-prev").onclick = () => { cursors.pop(); route(); };
  mountDeploy($("new-function-deploy"), null);
  // For the benchmark (kiln-bench --only console): the table is in the DOM,
  // and, a frame later, painted.
  performance.mark("functions-rendered");
  requestAnimationFrame(() => setTimeout(() => performance.mark("functions-painted"), 0));
}

// The deploy form, for a new function (name asked) or a new version.
function mountDeploy(slot, name) {
  const form = $("deploy-template").content.firstElementChild.cloneNode(true);
  const field = (n) => form.elements.namedItem(n);
  if (name) form.querySelector(".name-field").remove();
  else field("name").required = true;
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const target = name || field("name").value.trim();
    const params = new URLSearchParams();
    for (const line of field("env").value.split("\n")) if (line.trim()) params.append("env", line.trim());
    for (const line of field("args").value.split("\n")) if (line.trim()) params.append("arg", line.trim());
    for (const option of ["memory", "timeout", "schedule"]) {
      const value = field(option).value.trim();
      if (value) params.set(option, value);
    }
    for (const flag of ["cgi", "stream", "private"]) if (field(flag).checked) params.set(flag, "true");
    const file = field("file").files[0];
    const progress = form.querySelector(".deploy-progress");
    const bar = progress.querySelector("progress");
    const status = progress.querySelector("[role=status]");
    const error = form.querySelector(".error");
    error.textContent = "";
    progress.hidden = false;
    bar.value = 0;
    status.textContent = "";
    const xhr = new XMLHttpRequest();
    const started = Date.now();
    let ticking = null;
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) bar.value = Math.round((100 * e.loaded) / e.total);
    };
    xhr.upload.onload = () => {
      bar.value = 100;
      ticking = setInterval(() => {
        status.textContent = `compiling… ${Math.round((Date.now() - started) / 1000)} s`;
      }, 250);
      status.textContent = "compiling…";
    };
    xhr.onloadend = () => {
      clearInterval(ticking);
      let data = null;
      try { data = JSON.parse(xhr.responseText); } catch (e) { data = null; }
      if (xhr.status === 201 || xhr.status === 200) {
        status.textContent = `version ${data.version} deployed (${data.kind})`;
        if (!name) location.hash = `#/functions/${encodeURIComponent(target)}`;
        else route();
      } else {
        progress.hidden = true;
        error.textContent = (data && data.error) || `deploy failed (${xhr.status || "no answer"})`;
      }
    };
    xhr.open("POST", `/v1/functions/${encodeURIComponent(target)}/versions?${params}`);
    xhr.setRequestHeader("Content-Type", "application/wasm");
    xhr.send(file);
  });
  slot.replaceChildren(form);
}

async function functionView(name, mine) {
  show("function-view");
  const detail = await api("GET", `/v1/functions/${encodeURIComponent(name)}`);
  if (mine !== generation) return;
  $("function-name").textContent = detail.name;
  const url = functionUrl(detail.name);
  $("function-url").textContent = url;
  $("copy-url").onclick = (e) => copy(url, e.target);
  $("versions").replaceChildren(...detail.versions.map((v) => {
    const serving = v.number === detail.current_version;
    const action = serving ? "serving" : el("button", {
      type: "button",
      text: `Roll back to ${v.number}`,
      onclick: async () => {
        try {
          await api("POST", `/v1/functions/${encodeURIComponent(name)}/rollback`, { version: v.number });
          route();
        } catch (e) { showError(e); }
      },
    });
    return row(String(v.number), when(v.created_at), bytes(v.size), v.digest.slice(0, 12), action);
  }));
  const current = detail.versions.find((v) => v.number === detail.current_version);
  showConfig(current);
  mountDeploy($("version-deploy"), detail.name);
  $("try").onsubmit = async (event) => {
    event.preventDefault();
    const method = $("try-method").value;
    const response = await fetch(url, {
      method,
      credentials: "same-origin",
      body: method === "GET" ? undefined : $("try-body").value,
    });
    $("try-status").textContent = String(response.status);
    const outcome = response.headers.get("Kiln-Outcome");
    const exit = response.headers.get("Kiln-Exit-Code");
    $("try-outcome").textContent = [outcome && `outcome ${outcome}`, exit && `exit ${exit}`]
      .filter(Boolean).join(", ");
    $("try-response").textContent = await response.text();
    $("try-result").hidden = false;
  };
  $("logs").replaceChildren();
  await followLogs(name, mine, 0);
}

// The served version's configuration, every value as text.
function showConfig(version) {
  const c = version.config;
  const items = [["Kind", kindOf(version)]];
  if ((c.env || []).length) items.push(["Environment", c.env.map(([k, v]) => `${k}=${v}`).join("\n")]);
  if ((c.args || []).length) items.push(["Arguments", c.args.join("\n")]);
  if (c.memory_bytes) items.push(["Memory limit", bytes(c.memory_bytes)]);
  if (c.timeout_ms) items.push(["Time limit", `${c.timeout_ms} ms`]);
  if (c.schedule) items.push(["Schedule", String(c.schedule)]);
  const flags = ["cgi", "stream", "private", "receipt"].filter((f) => c[f]);
  if (flags.length) items.push(["Flags", flags.join(", ")]);
  $("function-config").replaceChildren(...items.flatMap(([label, value]) =>
    [el("dt", { text: label }), el("dd", {}, el("pre", { text: value }))]));
}

// Shows the latest logs, then, while "Follow live" is ticked and the page is
// still this one, the new ones each second.
async function followLogs(name, mine, after) {
  if (mine !== generation) return;
  const query = after ? `after=${after}&limit=100` : "limit=50";
  let entries = [];
  try {
    entries = await api("GET", `/v1/functions/${encodeURIComponent(name)}/logs?${query}`);
  } catch (e) { showError(e); }
  if (mine !== generation) return;
  const body = $("logs");
  for (const entry of entries) {
    const stderr = el("pre", { text: entry.stderr || "" });
    body.append(row(when(entry.at), String(entry.version), entry.outcome,
      String(entry.status), `${(entry.wall_us / 1000).toFixed(1)} ms`, stderr));
    after = Math.max(after, entry.id);
  }
  while (body.children.length > 500) body.firstElementChild.remove();
  waitToFollow(name, mine, after);
}

function waitToFollow(name, mine, after) {
  setTimeout(() => {
    if (mine !== generation) return;
    if ($("follow").checked) followLogs(name, mine, after);
    else waitToFollow(name, mine, after);
  }, 1000);
}

// --- usage -------------------------------------------------------------------

const METRICS = {
  requests: (l) => l.units.requests,
  cpu_ms: (l) => l.units.cpu_us / 1000,
  gb_seconds: (l) => l.units.gb_seconds,
  egress: (l) => l.units.bytes_out,
  cost: (l) => l.cost.total,
};

function day(offset) {
  const d = new Date();
  d.setUTCHours(0, 0, 0, 0);
  d.setUTCDate(d.getUTCDate() + offset);
  return d.toISOString().slice(0, 10);
}

function usageQuery() {
  const params = new URLSearchParams({
    since: $("usage-since").value,
    until: $("usage-until").value,
    by: $("usage-by").value,
  });
  if ($("usage-function").value) params.set("function", $("usage-function").value);
  return params;
}

async function usageView(mine) {
  show("usage-view");
  if (!$("usage-since").value) {
    $("usage-since").value = day(-6);
    $("usage-until").value = day(1);
  }
  if (!who.admin) {
    const functions = await api("GET", "/v1/functions");
    if (mine !== generation) return;
    const select = $("usage-function");
    const chosen = select.value;
    select.replaceChildren(el("option", { value: "", text: "all" }),
      ...functions.map((f) => el("option", { value: f.name, text: f.name })));
    select.value = chosen;
  } else {
    $("quota").replaceChildren();
  }
  await drawUsage(mine);
}

function showQuota(status) {
  const box = $("quota");
  const parts = [el("h3", { text: `This month (since ${status.month_start.slice(0, 10)})` })];
  const meter = (label, used, limit, format) => {
    const p = el("p", {}, `${label}: ${format(used)}`);
    if (limit !== undefined && limit !== null) {
      const share = Math.min(100, limit ? (100 * used) / limit : 100);
      p.append(` of ${format(limit)} (${share.toFixed(0)}%) `,
        el("progress", { max: "100", value: String(share), "aria-label": `${label}, share of the quota used` }));
    } else {
      p.append(" (no limit)");
    }
    return p;
  };
  parts.push(meter("Requests", status.used.requests, status.quota.requests_per_month, String));
  parts.push(meter("Cost", status.cost.total, status.quota.cost_per_month,
    (x) => money(x, status.currency)));
  box.replaceChildren(...parts);
}

async function drawUsage(mine) {
  const params = usageQuery();
  const [report, quota] = await Promise.all([
    api("GET", `/v1/usage?${params}`),
    who.admin ? null : api("GET", "/v1/quota"),
  ]);
  if (mine !== generation) return;
  if (quota) showQuota(quota);
  const csv = new URLSearchParams(params);
  csv.set("format", "csv");
  $("usage-csv").href = `/v1/usage?${csv}`;
  const metric = $("usage-metric").value;
  const value = METRICS[metric];
  const step = report.by === "day" ? 86400 : 3600;
  const start = Math.floor(Date.parse(report.since) / 1000 / step) * step;
  const end = Date.parse(report.until) / 1000;
  const points = new Map();
  for (const line of report.rows) {
    const at = Date.parse(line.period.length === 10 ? `${line.period}T00:00:00Z` : line.period) / 1000;
    points.set(at, (points.get(at) || 0) + value(line));
  }
  const xs = [];
  const ys = [];
  for (let t = start; t < end && xs.length < 24 * 400; t += step) {
    xs.push(t);
    ys.push(points.get(t) || 0);
  }
  const box = $("usage-chart");
  const width = Math.max(280, Math.min(box.clientWidth || 800, 1000));
  if (chart) chart.destroy();
  chart = new uPlot({
    width,
    height: 260,
    series: [{}, { label: $("usage-metric").selectedOptions[0].textContent, stroke: "#c2410c", fill: "rgba(194,65,12,0.15)" }],
    scales: { x: { time: true } },
  }, [xs, ys], box);
  box.dataset.points = String(ys.reduce((a, b) => a + b, 0));
  const currency = report.prices.currency;
  $("usage-rows").replaceChildren(...report.rows.map((l) => row(
    l.period, l.tenant || "", String(l.units.requests), (l.units.cpu_us / 1000).toFixed(1),
    l.units.gb_seconds.toFixed(4), bytes(l.units.bytes_out), money(l.cost.total, currency))));
}

// --- tokens ------------------------------------------------------------------

async function tokensView(mine) {
  show("tokens-view");
  const tokens = await api("GET", "/v1/tokens");
  if (mine !== generation) return;
  $("tokens").replaceChildren(...tokens.map((t) => row(
    t.name, when(t.created_at), t.revoked ? "revoked" : "active",
    t.revoked ? "" : el("button", {
      type: "button",
      text: `Revoke ${t.name}`,
      onclick: async () => {
        try { await api("DELETE", `/v1/tokens/${t.id}`); } catch (e) { showError(e); }
        route();
      },
    }))));
}

// --- operator ----------------------------------------------------------------

async function tenantsView(mine) {
  show("tenants-view");
  const tenants = await api("GET", "/v1/tenants");
  const quotas = await Promise.all(tenants.map((t) =>
    api("GET", `/v1/tenants/${encodeURIComponent(t.name)}/quota`)));
  if (mine !== generation) return;
  const limit = (x) => (x === undefined || x === null ? "unlimited" : String(x));
  $("tenants").replaceChildren(...quotas.map((q) => row(
    q.tenant, String(q.used.requests), money(q.cost.total, q.currency),
    limit(q.quota.requests_per_month), limit(q.quota.cost_per_month), limit(q.quota.max_concurrent))));
  const select = $("quota-tenant");
  select.replaceChildren(...tenants.map((t) => el("option", { value: t.name, text: t.name })));
}

async function clusterView(mine) {
  show("cluster-view");
  const [status, usage, nodes] = await Promise.all([
    api("GET", "/v1/status"),
    api("GET", "/v1/usage?by=function"),
    api("GET", "/v1/admin/nodes"),
  ]);
  if (mine !== generation) return;
  const now = Date.now() / 1000;
  $("nodes").replaceChildren(...nodes.map((n) => row(
    n.node, when(n.seen_at),
    n.stopped ? "stopped" : now - n.seen_at > 30 ? "silent" : "up",
    String(n.status.in_flight), String(n.status.compiles),
    String(n.status.function_cache_hits), String(n.status.loaded_functions))));
  const pairs = (object, names) => names.flatMap(([key, label]) =>
    [el("dt", { text: label }), el("dd", { text: String(object[key]) })]);
  $("node-status").replaceChildren(...pairs(status, [
    ["in_flight", "Requests in flight"], ["connections", "Connections"],
    ["active_instances", "Instances running"], ["compiles", "Compiles since start"],
    ["artifact_downloads", "Artifacts from the bucket"], ["loaded_functions", "Functions loaded"],
    ["function_cache_hits", "Cache hits"], ["function_cache_misses", "Cache misses"],
  ]));
  const byTenant = new Map();
  for (const line of usage.rows) {
    byTenant.set(line.tenant, (byTenant.get(line.tenant) || 0) + line.cost.total);
  }
  const top = [...byTenant.entries()].sort((a, b) => b[1] - a[1]).slice(0, 10);
  const currency = usage.prices.currency;
  $("top-tenants").replaceChildren(...top.map(([tenant, cost]) =>
    el("li", { text: `${tenant}: ${money(cost, currency)}` })));
  const prices = usage.prices;
  $("prices").replaceChildren(...pairs(prices, [
    ["currency", "Currency"], ["per_million_requests", "Per million requests"],
    ["per_million_cpu_ms", "Per million CPU ms"], ["per_gb_second", "Per GB-s"],
    ["per_gb_out", "Per GB out"], ["per_million_kv_reads", "Per million key-value reads"],
    ["per_million_kv_writes", "Per million key-value writes"], ["per_gb_month_kv", "Per GB-month stored"],
  ]));
}

// --- routing -----------------------------------------------------------------

async function route() {
  generation += 1;
  const mine = generation;
  showError(null);
  const path = location.hash.replace(/^#/, "") || "/";
  try {
    if (!who) who = await api("GET", "/v1/whoami");
  } catch (e) {
    who = null;
    $("who").textContent = "";
    return signInView();
  }
  $("who").textContent = who.admin ? "Signed in as the operator" : `Signed in as tenant ${who.tenant}`;
  try {
    const fn = path.match(/^\/functions\/(.+)$/);
    if (path === "/usage") return await usageView(mine);
    if (who.admin) {
      if (path === "/cluster") return await clusterView(mine);
      return await tenantsView(mine);
    }
    if (fn) return await functionView(decodeURIComponent(fn[1]), mine);
    if (path === "/tokens") return await tokensView(mine);
    if (path !== "/functions") cursors.splice(1);
    return await functionsView(mine);
  } catch (e) {
    if (e.status === 401) { who = null; return signInView(); }
    showError(e);
  }
}

function shownOnce(box, valueId, copyId, token) {
  $(valueId).textContent = token;
  $(copyId).onclick = (e) => copy(token, e.target);
  $(box).hidden = false;
}

document.addEventListener("DOMContentLoaded", () => {
  $("sign-in").addEventListener("submit", async (event) => {
    event.preventDefault();
    $("sign-in-error").textContent = "";
    try {
      who = await api("POST", "/console/session", { token: $("token").value });
      $("token").value = "";
      route();
    } catch (e) {
      $("sign-in-error").textContent = e.message;
    }
  });
  $("sign-up").addEventListener("submit", async (event) => {
    event.preventDefault();
    $("sign-up-error").textContent = "";
    try {
      const created = await api("POST", "/console/signup", { name: $("signup-name").value.trim() });
      who = { admin: false, tenant: created.name };
      $("new-token-tenant").textContent = created.name;
      shownOnce("new-token", "new-token-value", "new-token-copy", created.token);
    } catch (e) {
      $("sign-up-error").textContent = e.message;
    }
  });
  $("sign-out").addEventListener("click", async () => {
    try { await api("DELETE", "/console/session"); } catch (e) { /* the session is gone either way */ }
    who = null;
    location.hash = "#/";
    route();
  });
  $("usage-form").addEventListener("submit", (event) => {
    event.preventDefault();
    drawUsage(generation).catch(showError);
  });
  // Creating a token or a tenant: its secret is shown once.
  for (const [thing, path] of [["token", "/v1/tokens"], ["tenant", "/v1/tenants"]]) {
    $(`${thing}-create`).addEventListener("submit", async (event) => {
      event.preventDefault();
      try {
        const created = await api("POST", path, { name: $(`${thing}-name`).value.trim() });
        $(`${thing}-name`).value = "";
        shownOnce(`${thing}-created`, `${thing}-created-value`, `${thing}-created-copy`, created.token);
        route();
      } catch (e) { showError(e); }
    });
  }
  $("quota-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const quota = {};
    const number = (id, key) => { if ($(id).value !== "") quota[key] = Number($(id).value); };
    number("quota-requests", "requests_per_month");
    number("quota-cost", "cost_per_month");
    number("quota-concurrent", "max_concurrent");
    number("quota-rate", "requests_per_second");
    try {
      await api("PUT", `/v1/tenants/${encodeURIComponent($("quota-tenant").value)}/quota`, quota);
      $("quota-saved").textContent = "Saved.";
      route();
    } catch (e) { showError(e); }
  });
  window.addEventListener("hashchange", route);
  route();
});
