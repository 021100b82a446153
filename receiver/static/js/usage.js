// Usage (GET /api/usage?days=N): totals, jobs per day by outcome, generation time per model,
// each account's slots in use now, and the table per day, model and account. Hand-drawn SVG.

import {api} from "./api.js";
import {$, debounce, fill, h, s, span} from "./dom.js";

function rate(value) {
  return value === null || value === undefined ? "–" : `${Math.round(value * 1000) / 10}%`;
}

function niceMax(value) {
  if (value <= 4) return Math.max(1, Math.ceil(value));
  const step = 10 ** Math.floor(Math.log10(value));
  return Math.ceil(value / step) * step;
}

function stat(label, value, title) {
  return h("div", {class: "card stat", title: title || ""}, h("div", {class: "v"}, value), h("div", {class: "k"}, label));
}

function legend(items) {
  return h("div", {class: "legend"}, items.map(([cls, text]) => h("span", {}, h("i", {class: cls}), text)));
}

/** Jobs per day, stacked by outcome. */
function dayChart(days, width) {
  const height = 210, left = 34, bottom = 26, top = 10;
  const series = [["succeeded", d => d.succeeded], ["failed", d => d.failed + d.rejected],
    ["moderated", d => d.moderated], ["other", d => d.cancelled + d.active]];
  const max = niceMax(Math.max(1, ...days.map(d => d.jobs)));
  const plotW = width - left - 8, plotH = height - top - bottom;
  const slot = plotW / days.length, bar = Math.max(2, Math.min(38, slot * 0.7));
  const y = v => top + plotH - (v / max) * plotH;
  const svg = s("svg", {viewBox: `0 0 ${width} ${height}`, width, height, role: "img", "aria-labelledby": "chart-days-title"},
    s("title", {id: "chart-days-title"}, "Jobs per day by outcome"));
  const ticks = max <= 5 ? Array.from({length: max + 1}, (_, i) => i) : [0, max / 2, max];
  for (const tick of ticks) {
    svg.append(s("line", {class: "grid", x1: left, x2: width - 8, y1: y(tick), y2: y(tick)}),
      s("text", {x: left - 6, y: y(tick) + 4, "text-anchor": "end"}, String(Math.round(tick))));
  }
  const every = Math.ceil(days.length / Math.max(1, Math.floor(plotW / 46)));
  days.forEach((d, i) => {
    const x = left + i * slot + (slot - bar) / 2;
    let base = 0;
    for (const [name, pick] of series) {
      const n = pick(d);
      if (!n) continue;
      svg.append(s("rect", {class: `c-${name}`, x, width: bar, y: y(base + n), height: Math.max(1, y(base) - y(base + n)), rx: 2},
        s("title", {}, `${d.day}: ${n} ${name}`)));
      base += n;
    }
    if (i % every === 0 || i === days.length - 1) {
      svg.append(s("text", {x: x + bar / 2, y: height - 8, "text-anchor": "middle"}, d.day.slice(5)));
    }
  });
  svg.append(s("line", {class: "axis", x1: left, x2: width - 8, y1: y(0), y2: y(0)}));
  return svg;
}

/** Generation time per model: p50 solid, p95 light behind it. */
function modelChart(models, label, width) {
  const rows = models.filter(m => m.generation_p95 !== null);
  if (!rows.length) return h("p", {class: "muted"}, "No job has succeeded in this period yet.");
  const left = 118, rowH = 26, top = 6, height = top + rows.length * rowH + 22;
  const max = niceMax(Math.max(...rows.map(m => m.generation_p95)));
  const plotW = width - left - 50;
  const x = v => left + (v / max) * plotW;
  const svg = s("svg", {viewBox: `0 0 ${width} ${height}`, width, height, role: "img", "aria-labelledby": "chart-models-title"},
    s("title", {id: "chart-models-title"}, "Generation time per model, p50 and p95"));
  rows.forEach((m, i) => {
    const yy = top + i * rowH;
    svg.append(
      s("text", {x: left - 8, y: yy + 15, "text-anchor": "end"}, label(m.model)),
      s("rect", {class: "c-p95", x: left, y: yy + 4, height: 14, width: Math.max(1, x(m.generation_p95) - left), rx: 3},
        s("title", {}, `${label(m.model)} p95 ${span(m.generation_p95)}`)),
      s("rect", {class: "c-p50", x: left, y: yy + 4, height: 14, width: Math.max(1, x(m.generation_p50) - left), rx: 3},
        s("title", {}, `${label(m.model)} p50 ${span(m.generation_p50)}`)),
      s("text", {x: x(m.generation_p95) + 6, y: yy + 15}, span(m.generation_p50)),
    );
  });
  svg.append(s("text", {x: left, y: height - 4}, "0"), s("text", {x: left + plotW, y: height - 4, "text-anchor": "end"}, span(max)));
  return svg;
}

function slotChart(accounts, width) {
  if (!accounts.length) return h("p", {class: "muted"}, "No account is known yet (the relay learns them at its first job).");
  const left = 10, rowH = 40, height = accounts.length * rowH;
  const svg = s("svg", {viewBox: `0 0 ${width} ${height}`, width, height, role: "img", "aria-labelledby": "chart-slots-title"},
    s("title", {id: "chart-slots-title"}, "Slots in use per account"));
  accounts.forEach((a, i) => {
    const cap = a.max_jobs || Math.max(1, a.in_use);
    const yy = i * rowH;
    const plotW = width - left - 10;
    const used = (Math.min(a.in_use, cap) / cap) * plotW;
    svg.append(
      s("text", {x: left, y: yy + 13}, `${a.email} — ${a.in_use} of ${a.max_jobs ?? "?"} in use`),
      s("rect", {class: "c-free", x: left, y: yy + 19, width: plotW, height: 12, rx: 4}),
      s("rect", {class: "c-slot", x: left, y: yy + 19, width: Math.max(used, 0), height: 12, rx: 4}),
    );
  });
  return svg;
}

export class UsageView {
  constructor(app) {
    this.app = app;
    this.root = $("#usage");
    this.days = $("#usage-days");
    this.days.addEventListener("change", () => this.load());
    this.visible = false;
    this.later = debounce(() => this.visible && this.load(), 2000);
    window.addEventListener("resize", debounce(() => this.visible && this.data && this.draw(this.data), 200));
  }

  show() {
    this.visible = true;
    this.load();
  }

  hide() {
    this.visible = false;
  }

  onJob() {
    this.later();
  }

  resync() {
    if (this.visible) this.load();
  }

  async load() {
    try {
      this.data = await api(`/api/usage?days=${this.days.value}`);
    } catch (error) {
      fill(this.root, h("p", {class: "form-error"}, `Cannot load the usage: ${error.message}`));
      return;
    }
    this.draw(this.data);
  }

  draw(u) {
    const t = u.total;
    const label = m => this.app.label(m);
    const stats = h("div", {class: "stats", id: "usage-stats"},
      stat("Jobs", String(t.jobs), `${t.active} still active`),
      stat("Seconds of video", `${t.video_seconds} s`, "asked for by the jobs that succeeded"),
      stat("Success rate", rate(t.success_rate), "of the jobs that finished"),
      stat("Failure rate", rate(t.failure_rate), "failed (not moderation) or refused"),
      stat("Moderation rate", rate(t.moderation_rate), "blocked by Runway's moderation"),
      stat("Generation p50 / p95", `${span(t.generation_p50)} / ${span(t.generation_p95)}`, "from accepted to succeeded"),
      stat("Queue wait p50 / p95", `${span(t.queue_wait_p50)} / ${span(t.queue_wait_p95)}`, "from created to accepted upstream"),
      stat("429 rests", String(t.throttles), "creates useapi.net or Runway answered 429"),
    );
    const daysBox = h("div", {class: "card chart"}, h("h2", {}, "Jobs per day (UTC)"));
    const modelsBox = h("div", {class: "card chart"}, h("h2", {}, "Generation time per model"));
    const slotsBox = h("div", {class: "card chart", id: "usage-slots"}, h("h2", {}, "Slots in use now"));
    const table = this.table(u.rows, label);
    fill(this.root, stats, h("div", {class: "charts"}, daysBox, modelsBox), slotsBox,
      h("div", {class: "card"}, h("h2", {}, "By day, model and account"), table));
    const width = box => Math.max(260, box.clientWidth - 34);
    daysBox.append(dayChart(u.by_day, width(daysBox)),
      legend([["c-succeeded", "Succeeded"], ["c-failed", "Failed or refused"], ["c-moderated", "Moderated"], ["c-other", "Cancelled or running"]]));
    modelsBox.append(modelChart(u.by_model, label, width(modelsBox)), legend([["c-p50", "p50"], ["c-p95", "p95"]]));
    slotsBox.append(slotChart(u.accounts, width(slotsBox)));
  }

  table(rows, label) {
    if (!rows.length) return h("p", {class: "muted"}, "No jobs in this period.");
    const head = ["Day", "Model", "Account", "Jobs", "Video", "Success", "Failure", "Moderation", "Gen p50", "Gen p95", "Queue p50", "429s"];
    return h("div", {class: "table-wrap"}, h("table", {class: "usage", id: "usage-table"},
      h("thead", {}, h("tr", {}, head.map(t => h("th", {scope: "col"}, t)))),
      h("tbody", {}, rows.map(r => h("tr", {},
        h("td", {}, r.day), h("td", {}, label(r.model)), h("td", {}, r.account),
        h("td", {}, String(r.jobs)), h("td", {}, `${r.video_seconds} s`), h("td", {}, rate(r.success_rate)),
        h("td", {}, rate(r.failure_rate)), h("td", {}, rate(r.moderation_rate)), h("td", {}, span(r.generation_p50)),
        h("td", {}, span(r.generation_p95)), h("td", {}, span(r.queue_wait_p50)), h("td", {}, String(r.throttles)))))));
  }
}
