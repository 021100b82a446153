// The job list: filters (status, model, account), search in prompts, real paging with the cursor,
// an empty state, and live updates that patch rows in place (a row is never rebuilt).

import {api, query} from "./api.js";
import {
  $, STATUSES, TERMINAL, debounce, elapsedOf, fill, h, lengthOf, percent, pill, progressBar, promptOf,
  setPill, setText, span, statusLabel, timeAgo,
} from "./dom.js";

const PAGE = 50;
const FILTERS = ["status", "model", "account", "q"];

export class JobsView {
  constructor(app) {
    this.app = app;
    this.filters = {status: "", model: "", account: "", q: ""};
    this.cursors = [null]; // the cursor of each page seen so far; page n starts after cursors[n]
    this.page = 0;
    this.next = null;
    this.rows = new Map();
    this.loaded = false;
    this.visible = false;
    this.seq = 0;
    this.body = $("#jobs");
    this.form = $("#filters");
    this.fillSelect($("#f-status"), STATUSES.map(s => [s, statusLabel(s)]));
    this.fillSelect($("#f-model"), app.models.map(m => [m.name, m.label]));
    const later = debounce(() => this.applyFilters(), 250);
    this.form.addEventListener("input", event => (event.target.id === "q" ? later() : this.applyFilters()));
    this.form.addEventListener("submit", event => {
      event.preventDefault();
      this.applyFilters();
    });
    this.form.addEventListener("reset", () => setTimeout(() => this.applyFilters(), 0));
    $("#page-older").addEventListener("click", () => this.turn(1));
    $("#page-newer").addEventListener("click", () => this.turn(-1));
    this.body.addEventListener("click", event => {
      const row = event.target.closest("tr[data-id]");
      if (row && !event.target.closest("a")) app.go(`#job=${encodeURIComponent(row.dataset.id)}`);
    });
    this.ticker = null;
  }

  fillSelect(select, pairs) {
    const first = select.options[0];
    fill(select, first, pairs.map(([value, text]) => h("option", {value}, text)));
  }

  setAccounts(accounts) {
    const select = $("#f-account");
    const chosen = select.value || this.filters.account;
    const known = new Set([...accounts, ...(chosen ? [chosen] : [])]);
    this.fillSelect(select, [...known].sort().map(a => [a, a]));
    select.value = chosen;
  }

  show(params) {
    this.visible = true;
    const given = FILTERS.some(k => params.has(k));
    if (given) {
      const wanted = Object.fromEntries(FILTERS.map(k => [k, params.get(k) || ""]));
      if (FILTERS.some(k => wanted[k] !== this.filters[k])) {
        this.filters = wanted;
        this.syncForm();
        this.reset();
      }
    }
    if (!this.loaded) this.load();
    clearInterval(this.ticker);
    this.ticker = setInterval(() => this.tick(), 1000);
  }

  hide() {
    this.visible = false;
    clearInterval(this.ticker);
  }

  resync() {
    this.load();
  }

  syncForm() {
    $("#q").value = this.filters.q;
    $("#f-status").value = this.filters.status;
    $("#f-model").value = this.filters.model;
    if (this.filters.account && ![...$("#f-account").options].some(o => o.value === this.filters.account)) {
      this.setAccounts([this.filters.account]);
    }
    $("#f-account").value = this.filters.account;
  }

  applyFilters() {
    const wanted = {
      status: $("#f-status").value, model: $("#f-model").value, account: $("#f-account").value,
      q: $("#q").value.trim(),
    };
    if (FILTERS.every(k => wanted[k] === this.filters[k])) return;
    this.filters = wanted;
    const hash = query(wanted).slice(1);
    history.replaceState(null, "", `#${hash || "jobs"}`);
    this.reset();
    this.load();
  }

  reset() {
    this.cursors = [null];
    this.page = 0;
    this.loaded = false;
  }

  turn(step) {
    if (step > 0 && !this.next) return;
    if (step > 0) this.cursors[this.page + 1] = this.next;
    this.page = Math.max(0, this.page + step);
    this.load().then(() => $("#jobs-table").scrollIntoView({block: "nearest"}));
  }

  async load() {
    const seq = ++this.seq;
    const params = {...this.filters, limit: PAGE, cursor: this.cursors[this.page]};
    let answer;
    try {
      answer = await api(`/api/jobs${query(params)}`);
    } catch (error) {
      setText($("#jobs-summary"), `Could not load jobs: ${error.message}`);
      return;
    }
    if (seq !== this.seq) return; // a newer request is on its way
    this.loaded = true;
    this.next = answer.next_cursor;
    this.rows.clear();
    fill(this.body, answer.jobs.map(job => this.row(job)));
    this.render();
  }

  /** The summary line, pager and empty state after the rows changed. */
  render() {
    const count = this.rows.size;
    const first = this.page * PAGE + 1;
    const filtered = FILTERS.some(k => this.filters[k]);
    setText($("#jobs-summary"), count
      ? `Jobs ${first}–${first + count - 1}${filtered ? " matching the filters" : ""}, newest first`
      : "");
    setText($("#page-label"), count || this.page ? `Page ${this.page + 1}` : "");
    $("#page-newer").disabled = this.page === 0;
    $("#page-older").disabled = !this.next;
    $("#page-older").parentElement.hidden = count === 0 && this.page === 0;
    $("#jobs-table").hidden = count === 0;
    const empty = $("#jobs-empty");
    empty.hidden = count !== 0;
    if (count === 0) fill(empty, ...(filtered ? this.noMatch() : this.noJobs()));
  }

  noJobs() {
    return [
      h("h2", {}, "No jobs yet"),
      h("p", {class: "muted"}, "Submit your first video job with the form, or from a terminal:"),
      h("p", {}, h("a", {class: "btn primary", href: "#new"}, "New job")),
      h("pre", {}, 'runway-relay submit --model gen4.5 --prompt "a lighthouse in a storm" --wait'),
    ];
  }

  noMatch() {
    const clear = h("button", {type: "button", class: "btn"}, "Clear the filters");
    clear.addEventListener("click", () => this.form.reset());
    return [h("h2", {}, "No job matches"), h("p", {class: "muted"}, "Try another word, or widen the filters."), clear];
  }

  row(job) {
    const text = promptOf(job);
    const link = h("a", {class: text ? "prompt-link" : "prompt-link none", href: `#job=${encodeURIComponent(job.id)}`,
      title: text || "This model takes no prompt"}, text || `(no prompt) ${this.app.label(job.model)}`);
    const cells = {
      status: pill(job.status),
      bar: progressBar(job),
      pct: h("span", {class: "pct"}, percent(job.progress)),
      elapsed: h("td", {class: "c-elapsed"}, span(elapsedOf(job))),
    };
    const length = lengthOf(job);
    const tr = h("tr", {dataset: {id: job.id}},
      h("td", {class: "c-prompt"}, link, h("span", {class: "sub"}, job.id)),
      h("td", {class: "c-model"}, this.app.label(job.model)),
      h("td", {class: "c-len"}, length ? `${length} s` : "auto"),
      h("td", {class: "c-status"}, cells.status),
      h("td", {class: "c-progress"}, h("div", {class: "progress"}, cells.bar, cells.pct)),
      h("td", {class: "c-age"}, timeAgo(job.created_at)),
      cells.elapsed,
    );
    this.rows.set(job.id, {tr, cells, job});
    return tr;
  }

  patch(entry, job) {
    entry.job = job;
    setPill(entry.cells.status, job.status);
    entry.cells.bar.value = job.progress || 0;
    entry.cells.bar.className = `s-${job.status}`;
    setText(entry.cells.pct, percent(job.progress));
    setText(entry.cells.elapsed, span(elapsedOf(job)));
  }

  matches(job) {
    const f = this.filters;
    if (f.status && job.status !== f.status) return false;
    if (f.model && job.model !== f.model) return false;
    if (f.account && job.account !== f.account) return false;
    if (f.q) {
      const q = f.q.toLowerCase();
      if (!promptOf(job).toLowerCase().includes(q) && !job.id.startsWith(f.q)) return false;
    }
    return true;
  }

  onJob(job) {
    const entry = this.rows.get(job.id);
    if (entry) return this.patch(entry, job);
    if (!this.loaded || this.page !== 0 || !this.matches(job)) return;
    const newest = this.body.firstElementChild?.dataset.id || "";
    if (job.id <= newest) return;
    const tr = this.row(job);
    tr.classList.add("flash");
    this.body.prepend(tr);
    while (this.rows.size > PAGE) {
      const last = this.body.lastElementChild;
      this.rows.delete(last.dataset.id);
      last.remove();
      this.next = this.body.lastElementChild.dataset.id;
    }
    this.render();
  }

  tick() {
    const now = Date.now();
    for (const entry of this.rows.values()) {
      if (!TERMINAL.has(entry.job.status)) setText(entry.cells.elapsed, span(elapsedOf(entry.job, now)));
    }
  }
}
