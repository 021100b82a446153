// The JSON API and the live event stream. Any 401 (an expired or invalid session) sends the page to
// /login, remembering where it was so the same view opens again after signing in.

const RETURN_KEY = "relay.return";

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error) || `HTTP ${status}`);
    this.status = status;
    this.field = body && body.field;
    this.problems = (body && body.problems) || (this.field ? [{field: this.field, error: this.message}] : []);
  }
}

export function toLogin() {
  try {
    sessionStorage.setItem(RETURN_KEY, location.hash);
  } catch (_) { /* storage may be off */ }
  location.assign("/login");
}

/** The view to reopen after a sign-in (once), or "". */
export function takeReturn() {
  try {
    const hash = sessionStorage.getItem(RETURN_KEY) || "";
    sessionStorage.removeItem(RETURN_KEY);
    return hash;
  } catch (_) {
    return "";
  }
}

/**
 * One request. ``json`` is sent as application/json; ``form`` (FormData) as multipart. A POST
 * without a body still says it is JSON (the relay refuses writes that are neither).
 */
export async function api(path, {method = "GET", json, form} = {}) {
  const options = {method, headers: {Accept: "application/json"}, credentials: "same-origin"};
  if (form) {
    options.body = form;
  } else if (json !== undefined || method !== "GET") {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(json === undefined ? {} : json);
  }
  let response;
  try {
    response = await fetch(path, options);
  } catch (_) {
    throw new ApiError(0, {error: "The relay cannot be reached. Is `runway-relay serve` running?"});
  }
  if (response.status === 401) {
    toLogin();
    throw new ApiError(401, {error: "Your session has ended; sign in again."});
  }
  let body = null;
  try {
    body = await response.json();
  } catch (_) { /* not JSON */ }
  if (!response.ok) throw new ApiError(response.status, body || {error: response.statusText});
  return body;
}

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== "") q.set(k, v);
  const text = q.toString();
  return text ? `?${text}` : "";
}

/**
 * The live stream (GET /api/events) with its state shown in ``indicator``: "Live", or
 * "Reconnecting…" while it is down. The browser retries a dropped stream by itself; a stream the
 * server refused (401, 5xx) is retried here with a growing pause, after checking the session.
 */
export class Live {
  constructor(url, indicator, {onJob, onReconnect}) {
    this.url = url;
    this.indicator = indicator;
    this.onJob = onJob;
    this.onReconnect = onReconnect;
    this.events = 0;
    this.lost = false;
    this.pause = 1000;
    this.source = null;
  }

  connect() {
    const source = (this.source = new EventSource(this.url));
    source.addEventListener("open", () => {
      this.state("live", "Live");
      this.pause = 1000;
      if (this.lost) {
        this.lost = false;
        this.onReconnect();
      }
    });
    source.addEventListener("job", event => {
      this.events += 1;
      this.indicator.dataset.events = String(this.events);
      this.onJob(JSON.parse(event.data));
    });
    source.addEventListener("error", () => this.dropped(source));
  }

  async dropped(source) {
    this.lost = true;
    this.state("reconnecting", "Reconnecting…");
    if (source.readyState !== EventSource.CLOSED) return; // the browser is already retrying
    source.close();
    try {
      const probe = await fetch("/api/jobs?limit=1", {credentials: "same-origin"});
      if (probe.status === 401) return toLogin();
    } catch (_) { /* still down */ }
    setTimeout(() => this.connect(), this.pause);
    this.pause = Math.min(15000, this.pause * 2);
  }

  state(name, text) {
    this.indicator.dataset.state = name;
    this.indicator.textContent = text;
    this.indicator.title = name === "live" ? "Live updates are on" : "The event stream is down; retrying";
  }
}
