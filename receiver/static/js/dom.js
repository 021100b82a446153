// Small DOM and formatting helpers. Everything is built with createElement and textContent:
// no innerHTML with data, so a prompt can never become markup.

const SVG_NS = "http://www.w3.org/2000/svg";

function apply(el, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.setAttribute("class", value);
    else if (key === "text") el.textContent = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
}

/** h("a", {href: "#x", class: "c"}, "text", otherNode) */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  apply(el, attrs);
  append(el, children);
  return el;
}

/** The same for SVG elements. */
export function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  apply(el, attrs);
  append(el, children);
  return el;
}

export function $(selector, root = document) {
  return root.querySelector(selector);
}

/** Replace an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** Set text only when it changed (no needless layout, and selections survive). */
export function setText(el, text) {
  const value = text === null || text === undefined ? "" : String(text);
  if (el.textContent !== value) el.textContent = value;
}

// -- time ----------------------------------------------------------------------------------------

export function parseTime(iso) {
  return iso ? new Date(iso).getTime() : NaN;
}

/** "just now", "42 s ago", "3 min ago", "2 h ago", "yesterday", "5 days ago". */
export function ago(iso, now = Date.now()) {
  const seconds = Math.max(0, (now - parseTime(iso)) / 1000);
  if (!Number.isFinite(seconds)) return "";
  if (seconds < 5) return "just now";
  if (seconds < 60) return `${Math.floor(seconds)} s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  const days = Math.floor(seconds / 86400);
  return days === 1 ? "yesterday" : `${days} days ago`;
}

/** The exact local time, for hovers: "5 Mar 2026, 10:04:31". */
export function exact(iso) {
  const t = parseTime(iso);
  return Number.isFinite(t)
    ? new Date(t).toLocaleString(undefined, {dateStyle: "medium", timeStyle: "medium"})
    : "";
}

export function clock(iso) {
  const t = parseTime(iso);
  return Number.isFinite(t) ? new Date(t).toLocaleTimeString(undefined, {hour12: false}) : "";
}

/** A length of time: "0.4 s", "12 s", "3 min 5 s", "2 h 10 min". */
export function span(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "–";
  if (seconds < 10) return `${seconds.toFixed(1)} s`;
  if (seconds < 60) return `${Math.round(seconds)} s`;
  if (seconds < 3600) {
    const m = Math.floor(seconds / 60), r = Math.round(seconds % 60);
    return r ? `${m} min ${r} s` : `${m} min`;
  }
  const hours = Math.floor(seconds / 3600), m = Math.round((seconds % 3600) / 60);
  return m ? `${hours} h ${m} min` : `${hours} h`;
}

/** A <time> element showing "3 min ago" with the exact time on hover. */
export function timeAgo(iso) {
  return h("time", {datetime: iso, title: exact(iso), class: "ago"}, ago(iso));
}

/** Refresh every "x ago" on the page (called on a timer). */
export function refreshAges(root = document) {
  const now = Date.now();
  for (const el of root.querySelectorAll("time.ago")) setText(el, ago(el.getAttribute("datetime"), now));
}

// -- jobs ----------------------------------------------------------------------------------------

export const TERMINAL = new Set(["succeeded", "failed", "cancelled", "rejected"]);
export const STATUSES = ["queued", "submitted", "pending", "throttled", "running", "succeeded", "failed", "cancelled", "rejected"];
const STATUS_LABEL = {
  queued: "Queued", submitted: "Submitted", pending: "Pending", throttled: "Throttled", running: "Running",
  succeeded: "Succeeded", failed: "Failed", cancelled: "Cancelled", rejected: "Rejected",
  done: "Done", dead: "Gave up", moderated: "Moderated",
};

export function statusLabel(status) {
  return STATUS_LABEL[status] || status;
}

export function pill(status, text) {
  return h("span", {class: `pill s-${status}`}, text || statusLabel(status));
}

/** Update a pill made by pill() in place. */
export function setPill(el, status, text) {
  el.className = `pill s-${status}`;
  setText(el, text || statusLabel(status));
}

/** The job's prompt: text_prompt, or its shot prompts joined (as the server's `prompt` column). */
export function promptOf(job) {
  if (job.prompt) return job.prompt;
  const p = job.params || {};
  const parts = [p.text_prompt, ...[1, 2, 3, 4, 5].map(n => p[`multishot_prompt_${n}`])];
  return parts.filter(t => typeof t === "string" && t.trim()).join(" / ");
}

/** Seconds of video asked for, or null when the model decides. */
export function lengthOf(job) {
  const p = job.params || {};
  if (p.duration) return Number(p.duration);
  const shots = [1, 2, 3, 4, 5].map(n => Number(p[`multishot_duration_${n}`]) || 0).reduce((a, b) => a + b, 0);
  return shots || null;
}

export function elapsedOf(job, now = Date.now()) {
  const end = TERMINAL.has(job.status) ? parseTime(job.updated_at) : now;
  return Math.max(0, (end - parseTime(job.created_at)) / 1000);
}

export function percent(progress) {
  return `${Math.round((progress || 0) * 100)}%`;
}

export function progressBar(job) {
  const bar = h("progress", {max: "1", class: `s-${job.status}`, "aria-label": "Progress"});
  bar.value = job.progress || 0;
  return bar;
}

/** The first downloaded artifact's URL on this server, or null. */
export function localVideo(job) {
  const art = (job.artifacts || []).find(a => a.path);
  if (!art) return null;
  const name = art.path.split(/[\\/]/).pop();
  return `/files/${encodeURIComponent(job.id)}/${encodeURIComponent(name)}`;
}

export function handlersBusy(job) {
  return (job.handlers || []).some(r => r.status === "pending" || r.status === "running");
}

// -- feedback ------------------------------------------------------------------------------------

/** A short message in the corner; ``link`` is an optional [text, href]. */
export function toast(message, {error = false, link = null, ms = 4000} = {}) {
  const box = document.getElementById("toasts");
  const el = h("div", {class: error ? "toast error" : "toast", role: error ? "alert" : "status"}, message);
  if (link) el.append(" ", h("a", {href: link[1]}, link[0]));
  box.append(el);
  while (box.children.length > 3) box.firstElementChild.remove();
  setTimeout(() => el.remove(), ms);
  return el;
}

/** Run ``work`` with the button showing it is busy; returns what work returned. */
export async function busy(button, work) {
  button.disabled = true;
  button.classList.add("busy");
  button.setAttribute("aria-busy", "true");
  try {
    return await work();
  } finally {
    button.disabled = false;
    button.classList.remove("busy");
    button.removeAttribute("aria-busy");
  }
}

export function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}
