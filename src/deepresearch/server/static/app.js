// The deepresearch web page. It talks only to the JSON API (/v1/research…), like any other client.
//
// Everything a job shows is untrusted: events carry model output and web page text, sources carry page
// titles, URLs and snippets, and the report is model output. So this script never turns a string into
// markup: it builds elements and sets textContent, and makes links only from URLs that parse as
// http/https. The page's Content-Security-Policy (server/ui.py) enforces that with Trusted Types; the
// report's HTML goes through the one policy below into an iframe sandboxed WITHOUT allow-scripts.
//
// The API token (if the server has one) must go in an Authorization header, which EventSource cannot
// send, so the event stream is read with fetch() and a small Server-Sent Events parser that remembers
// the last event id and reconnects with Last-Event-ID.
"use strict";

const TOKEN_KEY = "deepresearch.token";
const REPORT_POLICY = "deepresearch-report";
const FINAL = new Set(["done", "failed", "cancelled"]);
const RECONNECT_MS = [500, 1000, 2000, 5000];
const JOB_ID = /^[A-Za-z0-9_-]{1,100}$/;
// Plain symbols rather than emoji: they render with the fonts any system has.
const STATUS_ICONS = { completed: "✓", in_progress: "◐", pending: "○", blocked: "⊘" };

const $ = (id) => document.getElementById(id);

let token = sessionStorage.getItem(TOKEN_KEY) || "";
let reportPolicy = null;
let askedForToken = false; // open the token form on the first 401 only, not on every list refresh

// The selected job. `gen` changes on every selection so that late answers for another job are dropped.
const view = {
  gen: 0,
  job: null,
  controller: null,
  status: "",
  calls: new Map(),
  sources: new Map(),
  usage: { prompt: 0, completion: 0, total: 0, cost: 0 },
  steps: 0,
  reportHtml: null,
  finishedSeen: false,
};

// ---- small helpers

function el(tag, className, ...children) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  for (const child of children) {
    if (child !== null && child !== undefined && child !== false) node.append(child);
  }
  return node;
}

function clip(text, limit) {
  const value = String(text ?? "");
  return value.length > limit ? value.slice(0, limit - 1) + "…" : value;
}

function httpUrl(value) {
  if (typeof value !== "string") return null;
  try {
    const url = new URL(value);
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
  } catch {
    return null;
  }
}

function outboundLink(url, text) {
  const href = httpUrl(url);
  if (!href) return el("span", "url", clip(text ?? url, 300));
  const link = el("a", "url", clip(text ?? href, 300));
  link.href = href;
  link.target = "_blank";
  link.rel = "noopener noreferrer";
  return link;
}

function tokens(n) {
  return Number(n || 0).toLocaleString("en-US");
}

function dollars(n) {
  return "$" + Number(n || 0).toFixed(4);
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

function showMessage(node, text) {
  node.textContent = text || "";
  node.hidden = !text;
}

// ---- the API

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function authHeaders(extra = {}) {
  const headers = { ...extra };
  if (token) headers.Authorization = "Bearer " + token;
  return headers;
}

async function failure(response) {
  if (response.status === 401) {
    if (!askedForToken) $("token-box").open = true;
    askedForToken = true;
    return new ApiError(401, "This server needs an API token: enter it under “API token” above.");
  }
  let detail = response.statusText;
  try {
    const body = await response.json();
    if (typeof body.detail === "string") detail = body.detail;
    else if (Array.isArray(body.detail)) detail = body.detail.map((d) => d.msg || JSON.stringify(d)).join("; ");
  } catch {
    // not JSON: keep the status text
  }
  return new ApiError(response.status, `${response.status}: ${clip(detail, 300)}`);
}

async function api(path, init = {}) {
  const response = await fetch(path, { ...init, headers: authHeaders(init.headers), cache: "no-store" });
  if (!response.ok) throw await failure(response);
  return response.json();
}

// ---- Server-Sent Events over fetch

// Feeds text chunks, calls `dispatch({id, type, data})` per event (per the WHATWG parsing rules: comments
// skipped, multi-line data joined, a bare "\r" line end held back until the next chunk shows it is not "\r\n").
function sseParser(dispatch) {
  let buffer = "";
  let type = "";
  let data = [];
  let lastId = "";
  const line = (text) => {
    if (text === "") {
      if (data.length) dispatch({ id: lastId, type: type || "message", data: data.join("\n") });
      type = "";
      data = [];
      return;
    }
    if (text.startsWith(":")) return;
    const colon = text.indexOf(":");
    const field = colon < 0 ? text : text.slice(0, colon);
    let value = colon < 0 ? "" : text.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") data.push(value);
    else if (field === "event") type = value;
    else if (field === "id" && !value.includes("\0")) lastId = value;
  };
  return (chunk) => {
    buffer += chunk;
    const parts = buffer.split(/\r\n|\n|\r(?!$)/);
    buffer = parts.pop();
    for (const part of parts) line(part);
  };
}

// Follows a job's events until the `end` event, reconnecting after drops with Last-Event-ID.
async function followEvents(url, onEvent, signal) {
  let lastId = "";
  let attempt = 0;
  while (!signal.aborted) {
    let ended = false;
    try {
      const headers = authHeaders({ Accept: "text/event-stream" });
      if (lastId) headers["Last-Event-ID"] = lastId;
      const response = await fetch(url, { headers, signal, cache: "no-store" });
      if (!response.ok) throw await failure(response);
      attempt = 0;
      setConnection("");
      const feed = sseParser((event) => {
        if (event.id) lastId = event.id;
        if (event.type === "end") ended = true;
        onEvent(event);
      });
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      while (!ended) {
        const { value, done } = await reader.read();
        if (done) break;
        feed(value);
      }
      if (ended) {
        await reader.cancel().catch(() => {});
        return;
      }
    } catch (error) {
      if (signal.aborted) return;
      if (error instanceof ApiError && error.status !== 429 && error.status < 500) {
        setConnection(error.message);
        return;
      }
    }
    setConnection("Connection lost; reconnecting…");
    await sleep(RECONNECT_MS[Math.min(attempt++, RECONNECT_MS.length - 1)], signal);
  }
}

function setConnection(text) {
  showMessage($("connection"), text);
}

// ---- the job list

async function loadJobs() {
  try {
    const { jobs } = await api("/v1/research?limit=30");
    showMessage($("jobs-error"), "");
    const list = $("jobs");
    list.replaceChildren(
      ...jobs.map((job) => {
        const button = el(
          "button",
          "job-item",
          el("span", "job-q", clip(job.question, 160)),
          el("span", `status status-${job.status}`, job.status),
          el("time", "job-time", new Date(job.created).toLocaleString()),
        );
        button.type = "button";
        button.dataset.id = job.id;
        if (view.job && view.job.id === job.id) button.setAttribute("aria-current", "true");
        button.addEventListener("click", () => selectJob(job.id));
        return el("li", null, button);
      }),
    );
    if (view.job) {
      const current = jobs.find((job) => job.id === view.job.id);
      if (current && !FINAL.has(view.status)) setStatus(current.status);
    }
  } catch (error) {
    showMessage($("jobs-error"), error.message);
  }
}

// ---- the selected job

function resetJobView(job) {
  view.controller?.abort();
  view.gen += 1;
  view.job = job;
  view.controller = new AbortController();
  view.calls = new Map();
  view.sources = new Map();
  view.usage = { prompt: 0, completion: 0, total: 0, cost: 0 };
  view.steps = 0;
  view.reportHtml = null;
  view.finishedSeen = false;
  $("placeholder").hidden = true;
  $("job").hidden = false;
  $("job-question").textContent = job.question;
  $("timeline").replaceChildren();
  $("plan").replaceChildren();
  $("plan-empty").hidden = false;
  $("report-box").hidden = true;
  showMessage($("job-error"), "");
  showMessage($("connection"), "");
  closeSource();
  setStatus(job.status);
  renderStats();
  for (const item of $("jobs").querySelectorAll("button.job-item")) {
    if (item.dataset.id === job.id) item.setAttribute("aria-current", "true");
    else item.removeAttribute("aria-current");
  }
}

async function selectJob(id) {
  if (!JOB_ID.test(id)) return;
  if (location.hash !== "#job=" + id) history.replaceState(null, "", "#job=" + id);
  let job;
  try {
    job = await api(`/v1/research/${encodeURIComponent(id)}`);
  } catch (error) {
    $("placeholder").hidden = false;
    $("job").hidden = true;
    $("placeholder").textContent = error.message;
    return;
  }
  resetJobView(job);
  const gen = view.gen;
  showDetail(job);
  followEvents(job.links.events, (event) => onEvent(event, gen), view.controller.signal);
}

function setStatus(status) {
  view.status = status;
  const badge = $("job-status");
  badge.textContent = status;
  badge.className = `status status-${status}`;
  $("cancel").hidden = FINAL.has(status) || !status;
}

function renderStats() {
  $("stat-steps").textContent = String(view.steps);
  $("stat-tokens").textContent = tokens(view.usage.total);
  $("stat-split").textContent = `${tokens(view.usage.prompt)} / ${tokens(view.usage.completion)}`;
  $("stat-cost").textContent = dollars(view.usage.cost);
}

function useTotals(usage, steps) {
  if (!usage || typeof usage !== "object") return;
  view.usage = {
    prompt: Number(usage.prompt_tokens || 0),
    completion: Number(usage.completion_tokens || 0),
    total: Number(usage.total_tokens || 0),
    cost: Number(usage.cost_usd || 0),
  };
  if (Number.isFinite(steps)) view.steps = Math.max(view.steps, steps);
  renderStats();
}

async function refreshDetail(gen) {
  try {
    const detail = await api(view.job.links.self);
    if (gen === view.gen) showDetail(detail);
  } catch (error) {
    if (gen === view.gen) showMessage($("job-error"), error.message);
  }
}

function showDetail(detail) {
  view.sources = new Map(
    (detail.sources || []).filter((s) => Number.isInteger(s.n)).map((source) => [source.n, source]),
  );
  if (FINAL.has(detail.status)) {
    setStatus(detail.status);
    useTotals(detail.usage, detail.steps);
  }
  if (detail.error) showMessage($("job-error"), detail.error);
  if (detail.report) showReport(detail);
}

// ---- the timeline

function addEvent(kind, icon, title, step, ...details) {
  const box = $("timeline");
  const nearBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  const head = el("div", "event-head", el("strong", null, title));
  if (step) head.append(el("span", "step", `step ${step}`));
  const item = el(
    "li",
    `event kind-${kind}`,
    el("span", "icon", icon),
    el("div", "event-body", head, ...details),
  );
  item.dataset.kind = kind;
  box.append(item);
  if (nearBottom) box.scrollTop = box.scrollHeight;
  return item;
}

function parseJson(text) {
  try {
    const value = JSON.parse(text);
    return value && typeof value === "object" ? value : {};
  } catch {
    return {};
  }
}

function messageText(message) {
  const content = message && message.content;
  if (typeof content === "string") return content;
  if (Array.isArray(content)) return content.map((part) => (part && part.text) || "").join(" ");
  return "";
}

const onTool = {
  batch_web_surfer(event, args) {
    if (args.action === "batch_search") {
      const queries = Array.isArray(args.queries) ? args.queries : [];
      const rows = queries.map((q) => el("li", null, el("span", "query", clip(q, 300)), el("span", "count")));
      const item = addEvent("search", "⌕", "Search", event.step, el("ul", "queries", ...rows));
      return { item, rows };
    }
    if (args.action === "batch_open") {
      const urls = Array.isArray(args.urls) ? args.urls : [];
      const rows = urls.map((u) => el("li", null, outboundLink(String(u)), el("span", "count")));
      const item = addEvent("open", "↗", "Open pages", event.step, el("ul", "pages", ...rows));
      return { item, rows, urls: urls.map(String) };
    }
    return { item: addEvent("tool", "◆", `Web: ${clip(args.action, 60)}`, event.step) };
  },
  todo() {
    return {}; // shown when its result (the new plan) arrives
  },
  file(event, args) {
    const what = `${clip(args.action, 40)} ${clip(args.path, 200)}`.trim();
    return { item: addEvent("file", "▤", "File", event.step, el("p", "detail", what)) };
  },
  shell(event, args) {
    return { item: addEvent("shell", "⌨", "Shell", event.step, el("code", "detail", clip(args.cmd, 300))) };
  },
};

function onToolCall(event) {
  const args = parseJson(event.arguments);
  const handler = onTool[event.name];
  const call = handler
    ? handler(event, args)
    : {
        item: addEvent("tool", "◆", `Tool: ${clip(event.name, 80)}`, event.step,
          el("code", "detail", clip(event.arguments, 300))),
      };
  view.calls.set(event.call_id, { name: event.name, ...call });
}

function onToolResult(event) {
  const call = view.calls.get(event.call_id) || {};
  const data = event.data && typeof event.data === "object" ? event.data : {};
  if (event.name === "todo" && event.state && event.state.todo) {
    renderPlan(event.state.todo);
    addEvent("plan", "☰", "Plan updated", event.step, el("p", "detail", clip(data.operation, 200)));
  } else if (data.action === "batch_search" && call.rows) {
    (Array.isArray(data.queries) ? data.queries : []).forEach((q, i) => {
      const count = call.rows[i] && call.rows[i].querySelector(".count");
      if (count) count.textContent = q.error ? `failed: ${clip(q.error, 200)}` : `${q.count} result${q.count === 1 ? "" : "s"}`;
    });
  } else if (data.action === "batch_open" && call.rows) {
    for (const page of Array.isArray(data.opened) ? data.opened : []) {
      const row = call.rows[call.urls.indexOf(String(page.url))];
      const count = row && row.querySelector(".count");
      if (!count) continue;
      count.textContent = page.ok ? `read ${tokens(page.chars)} chars` : `failed: ${clip(page.error, 200)}`;
      row.classList.add(page.ok ? "ok" : "failed");
    }
  }
  if (event.is_error) {
    const text = clip(String(event.content || "").split("\n").find((l) => l.trim()) || "error", 300);
    const target = call.item || addEvent("error", "⚠", `${clip(event.name, 80)} failed`, event.step);
    target.classList.add("failed");
    target.querySelector(".event-body").append(el("p", "error", text));
  }
}

function renderPlan(todo) {
  const keys = Object.keys(todo).sort((a, b) => a.localeCompare(b, undefined, { numeric: true }));
  $("plan").replaceChildren(
    ...keys.map((key) => {
      const step = todo[key] || {};
      const status = String(step.status || "pending");
      const item = el(
        "li",
        `plan-step status-${status.replace(/[^a-z_]/g, "")}`,
        el("span", "icon", STATUS_ICONS[status] || "○"),
        el("span", "task", clip(step.task, 300)),
      );
      if (step.priority === "high" || step.priority === "critical") {
        item.append(el("span", "priority", step.priority));
      }
      if (step.details) item.append(el("p", "detail", clip(step.details, 300)));
      item.title = status.replace("_", " ");
      return item;
    }),
  );
  $("plan-empty").hidden = keys.length > 0;
}

function onEvent(sse, gen) {
  if (gen !== view.gen) return;
  const event = parseJson(sse.data);
  switch (sse.type) {
    case "run_started":
      setStatus("running");
      addEvent("start", "▶", "Started", null,
        el("p", "detail", `model ${clip(event.model, 80)} · search ${clip(event.search, 40)}`));
      break;
    case "run_resumed":
      setStatus("running");
      addEvent("resume", "↻", "Resumed", event.step);
      break;
    case "llm_call": {
      const usage = event.usage || {};
      view.usage.prompt += Number(usage.prompt_tokens || 0);
      view.usage.completion += Number(usage.completion_tokens || 0);
      view.usage.total += Number(usage.total_tokens || 0);
      view.usage.cost += Number(usage.cost_usd || 0);
      view.steps = Math.max(view.steps, Number(event.step || 0));
      renderStats();
      const text = messageText(event.message);
      const said = /<answer>/i.test(text) ? "Wrote the final answer." : text.trim();
      addEvent("model", "✎", "Model", event.step,
        el("p", "detail", `${tokens(usage.total_tokens)} tokens · ${dollars(usage.cost_usd)}`),
        said ? el("p", "said", clip(said, 240)) : null);
      break;
    }
    case "tool_call":
      onToolCall(event);
      break;
    case "tool_result":
      onToolResult(event);
      break;
    case "context_compacted":
      addEvent("compact", "⇣", "Context compacted", event.step,
        el("p", "detail", `${tokens(event.tokens_before)} → ${tokens(event.tokens_after)} tokens`));
      break;
    case "final_answer_forced":
      addEvent("forced", "⇥", "Budget reached: asking for the report", event.step,
        el("p", "detail", clip(event.reason, 200)));
      break;
    case "nudge":
      addEvent("nudge", "↺", "Nudged the model", event.step, el("p", "detail", clip(event.reason, 80)));
      break;
    case "report": {
      const c = event.citations || {};
      addEvent("report", "❐", "Report written", event.step,
        el("p", "detail", `${tokens(event.chars)} chars · ${c.resolved ?? 0} of ${c.cited ?? 0} cited sources resolved`));
      refreshDetail(gen);
      break;
    }
    case "run_finished":
      view.finishedSeen = true;
      useTotals(event.usage, Number(event.steps));
      addEvent("finished", "■", `Run finished: ${clip(event.status, 40)}`, event.step,
        el("p", "detail", `${view.steps} steps · ${tokens(view.usage.total)} tokens · ${dollars(view.usage.cost)}`));
      break;
    case "error":
      addEvent("error", "⚠", `Error: ${clip(event.error_type, 80)}`, event.step,
        el("p", "error", clip(event.message, 500)));
      break;
    case "end": {
      const status = String(event.status || "unknown");
      setStatus(status);
      const item = addEvent("end", "●", `Job ${status}`, null);
      item.dataset.status = status;
      refreshDetail(gen);
      loadJobs();
      break;
    }
    default:
      break;
  }
}

// ---- the report and its sources

function trustedReport(html) {
  if (!window.trustedTypes || !window.trustedTypes.createPolicy) return html;
  // The only HTML this page ever renders, and only into the sandboxed iframe (see server/ui.py).
  reportPolicy = reportPolicy || window.trustedTypes.createPolicy(REPORT_POLICY, { createHTML: (s) => s });
  return reportPolicy.createHTML(html);
}

function showReport(detail) {
  const html = detail.report.html;
  $("report-box").hidden = false;
  setDownload($("download-md"), detail.links.report_markdown, `deepresearch-${detail.id}.md`);
  setDownload($("download-html"), detail.links.report_html, `deepresearch-${detail.id}.html`);
  if (html === view.reportHtml) return;
  view.reportHtml = html;
  const frame = $("report");
  frame.onload = () => wireReport(frame);
  frame.srcdoc = trustedReport(html || "<!DOCTYPE html><p>The report has no HTML version; download the Markdown.</p>");
}

function wireReport(frame) {
  const doc = frame.contentDocument;
  if (!doc) return;
  doc.addEventListener("click", onReportClick);
  doc.addEventListener("keydown", (event) => {
    if (event.key === "Escape") closeSource();
  });
  fitReport();
}

// The iframe grows to its content so the page scrolls as one; only a new width can change that height.
function fitReport() {
  const frame = $("report");
  const root = frame.contentDocument && frame.contentDocument.documentElement;
  if (!root) return;
  frame.style.height = "0px";
  frame.style.height = root.scrollHeight + 8 + "px";
}

function watchReportWidth() {
  const frame = $("report");
  let width = frame.clientWidth;
  new ResizeObserver(() => {
    if (frame.clientWidth !== width) {
      width = frame.clientWidth;
      fitReport();
    }
  }).observe(frame);
}

function onReportClick(event) {
  const target = event.target;
  const link = target && target.nodeType === 1 ? target.closest("a") : null;
  if (!link) return;
  event.preventDefault();
  const href = link.getAttribute("href") || "";
  const cite = /^#ref-(\d+)$/.exec(href);
  if (link.classList.contains("cite") && cite) {
    showSource(Number(cite[1]));
    return;
  }
  if (href.startsWith("#")) {
    link.ownerDocument.getElementById(href.slice(1))?.scrollIntoView({ block: "center" });
    return;
  }
  const url = httpUrl(href);
  if (url) window.open(url, "_blank", "noopener,noreferrer");
}

function showSource(n) {
  const source = view.sources.get(n);
  $("source-n").textContent = `[${n}]`;
  const link = $("source-link");
  const plain = $("source-url-text");
  if (!source) {
    $("source-title").textContent = "Source not found";
    link.hidden = true;
    plain.hidden = true;
    $("source-snippet").textContent = "";
    $("source-meta").textContent = "The job's sources do not list this number.";
  } else {
    $("source-title").textContent = clip(source.title || "(untitled)", 300);
    const href = httpUrl(source.url);
    if (href) {
      link.href = href;
      link.textContent = clip(href, 300);
    } else {
      link.removeAttribute("href");
      plain.textContent = clip(source.url, 300);
    }
    link.hidden = !href;
    plain.hidden = Boolean(href);
    $("source-snippet").textContent = source.snippet || "(no passage recorded)";
    $("source-meta").textContent =
      `${source.fetched ? "Opened and read in full" : "Seen in search results"} · ${clip(source.key, 40)}`;
  }
  $("source-panel").hidden = false;
  $("source-close").focus();
}

function closeSource() {
  $("source-panel").hidden = true;
}

function setDownload(anchor, href, filename) {
  anchor.href = href;
  anchor.setAttribute("download", filename);
}

// Plain links download without the token; with one, fetch the file and save it from a blob.
async function download(event) {
  if (!token) return;
  event.preventDefault();
  const anchor = event.currentTarget;
  try {
    const response = await fetch(anchor.getAttribute("href"), { headers: authHeaders(), cache: "no-store" });
    if (!response.ok) throw await failure(response);
    const url = URL.createObjectURL(await response.blob());
    const save = el("a");
    save.href = url;
    save.download = anchor.getAttribute("download") || "report";
    document.body.append(save);
    save.click();
    save.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  } catch (error) {
    showMessage($("job-error"), error.message);
  }
}

// ---- the forms

async function submitQuestion(event) {
  event.preventDefault();
  const question = $("question").value.trim();
  if (!question) return;
  const options = {};
  const steps = $("max-steps").value;
  if (steps) options.max_steps = Number(steps);
  if ($("language").value) options.language = $("language").value;
  const button = $("submit");
  button.disabled = true;
  showMessage($("form-error"), "");
  try {
    const job = await api("/v1/research", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ question, options }),
    });
    $("question").value = "";
    await loadJobs();
    await selectJob(job.id);
  } catch (error) {
    showMessage($("form-error"), error.message);
  } finally {
    button.disabled = false;
  }
}

async function cancelJob() {
  if (!view.job) return;
  try {
    const job = await api(view.job.links.cancel, { method: "POST" });
    setStatus(job.status);
    loadJobs();
  } catch (error) {
    showMessage($("job-error"), error.message);
  }
}

function showTokenState() {
  $("token-state").textContent = token ? "(set)" : "(none)";
  $("token").value = token;
}

function saveToken(event) {
  event.preventDefault();
  token = $("token").value.trim();
  askedForToken = false;
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
  showTokenState();
  $("token-box").open = false;
  loadJobs();
  if (view.job) selectJob(view.job.id);
}

function forgetToken() {
  token = "";
  sessionStorage.removeItem(TOKEN_KEY);
  showTokenState();
}

function jobFromHash() {
  const match = /^#job=(.+)$/.exec(location.hash);
  if (match && (!view.job || view.job.id !== match[1])) selectJob(match[1]);
}

function start() {
  showTokenState();
  $("ask").addEventListener("submit", submitQuestion);
  $("question").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) $("ask").requestSubmit();
  });
  $("token-form").addEventListener("submit", saveToken);
  $("token-forget").addEventListener("click", forgetToken);
  $("refresh").addEventListener("click", loadJobs);
  $("cancel").addEventListener("click", cancelJob);
  $("source-close").addEventListener("click", closeSource);
  $("download-md").addEventListener("click", download);
  $("download-html").addEventListener("click", download);
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape") closeSource();
  });
  window.addEventListener("hashchange", jobFromHash);
  watchReportWidth();
  setInterval(() => {
    if (document.visibilityState === "visible") loadJobs();
  }, 5000);
  loadJobs();
  jobFromHash();
}

start();
