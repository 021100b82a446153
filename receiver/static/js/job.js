// The job page (/#job=<id>): prompt and every parameter, the timeline with time spent in each phase,
// progress, the error in words, the player, handler runs with their messages and history, and the
// cancel / re-submit / replay buttons. The page is built once per job and then patched: the player
// in particular is created once and never rebuilt, whatever other jobs do.

import {api} from "./api.js";
import {
  TERMINAL, busy, clock, elapsedOf, exact, fill, h, handlersBusy, lengthOf, localVideo, parseTime, percent,
  pill, promptOf, s, setPill, setText, span, statusLabel, toast,
} from "./dom.js";

const PARAM_LABELS = {
  text_prompt: "Prompt", duration: "Duration", aspect_ratio: "Aspect ratio", resolution: "Resolution",
  audio: "Audio", seed: "Seed", imageAssetId1: "Start frame", imageAssetId2: "End frame",
  videoAssetId: "Reference video", exploreMode: "Explore mode", email: "Account asked for",
};

/** The job's error (or end) in words a user understands. */
export function explain(job) {
  const error = job.error || "No reason was given.";
  if (job.status === "failed" && job.error_kind === "moderation") {
    return ["Blocked by Runway's moderation", error,
      "Moderated jobs are not re-submitted: each one counts against the account, and many can get it suspended. Change the prompt or image before trying again."];
  }
  if (job.status === "failed") {
    return ["The generation failed at Runway", error,
      "Transient failures are re-submitted automatically; the resubmit handler below says what it did."];
  }
  if (job.status === "rejected") {
    return ["useapi.net refused to start this job", error, "No credit was spent. Fix the request and submit again."];
  }
  return null;
}

function paramRows(job, app) {
  const p = job.params || {};
  const rows = [];
  const add = (label, value, cls) => rows.push(h("dt", {}, label), h("dd", {class: cls}, value));
  add("Model", `${app.label(job.model)} (${job.model})`);
  for (const [key, label] of Object.entries(PARAM_LABELS)) {
    if (!(key in p)) continue;
    let value = p[key];
    if (key === "duration") value = `${value} s`;
    if (typeof value === "boolean") value = value ? "On" : "Off";
    add(label, String(value), key === "text_prompt" ? "long" : key.endsWith("Id1") || key.endsWith("Id2") || key === "videoAssetId" ? "mono" : null);
  }
  for (let n = 1; n <= 5; n++) {
    if (p[`multishot_prompt_${n}`]) add(`Shot ${n}`, `${p[`multishot_prompt_${n}`]} (${p[`multishot_duration_${n}`]} s)`, "long");
  }
  if (!("duration" in p)) add("Duration", lengthOf(job) ? `${lengthOf(job)} s (the shots' total)` : "Automatic (set by the model)");
  add("Ran on account", job.account || "not chosen yet");
  add("Task id", job.task_id || "not created yet", "mono");
  add("Attempt", String(job.attempt));
  add("Created", exact(job.created_at));
  add("Updated", exact(job.updated_at));
  if (job.group_id) add("Compare group", h("a", {href: `#group=${encodeURIComponent(job.group_id)}`}, "Open the comparison"));
  if (job.client_ref) add("Client ref", job.client_ref, "mono");
  return rows;
}

export class JobView {
  constructor(app) {
    this.app = app;
    this.root = document.getElementById("detail");
    this.id = null;
    this.job = null;
    this.inflight = null;
    this.dirty = false;
    this.poll = null;
    this.pollDelay = 400;
    this.ticker = null;
    this.openHistory = new Set();
  }

  show(params) {
    const id = params.get("job");
    clearInterval(this.ticker);
    this.ticker = setInterval(() => this.tick(), 1000);
    if (id === this.id && this.job) return this.refresh();
    this.id = id;
    this.job = null;
    this.video = null;
    this.openHistory.clear();
    this.build();
    this.refresh();
  }

  hide() {
    clearInterval(this.ticker);
    clearTimeout(this.poll);
    // Leaving the page stops playback; coming back builds it again.
    this.video?.pause();
    this.id = null;
  }

  resync() {
    if (this.id) this.refresh();
  }

  onJob(job) {
    if (job.id === this.id) this.refresh();
  }

  refresh() {
    if (!this.id) return Promise.resolve();
    if (this.inflight) {
      this.dirty = true;
      return this.inflight;
    }
    const id = this.id;
    this.inflight = api(`/api/jobs/${encodeURIComponent(id)}`)
      .then(job => id === this.id && this.update(job))
      .catch(error => id === this.id && this.failed(error))
      .finally(() => {
        this.inflight = null;
        if (this.dirty) {
          this.dirty = false;
          this.refresh();
        }
      });
    return this.inflight;
  }

  failed(error) {
    if (error.status === 401) return null;
    if (this.job) return toast(`Could not refresh the job: ${error.message}`, {error: true});
    fill(this.root, h("a", {class: "back", href: "#jobs"}, "← All jobs"),
      h("div", {class: "empty"}, h("h2", {}, error.status === 404 ? "No such job" : "Could not load the job"),
        h("p", {class: "muted"}, error.message)));
  }

  build() {
    const el = (this.el = {});
    el.title = h("h1", {id: "job-prompt"}, "Loading…");
    el.id = h("span", {class: "sub"}, this.id);
    el.model = h("span", {class: "chip"});
    el.status = pill("queued");
    el.attempt = h("span", {class: "muted"});
    el.group = h("a", {hidden: true}, "Part of a comparison →");
    el.cancel = h("button", {type: "button", class: "btn danger", id: "job-cancel"}, "Cancel job");
    el.resubmit = h("button", {type: "button", class: "btn", id: "job-resubmit"}, "Re-submit");
    el.replay = h("button", {type: "button", class: "btn", id: "job-replay"}, "Replay handlers");
    el.note = h("p", {class: "action-note", id: "job-note", "aria-live": "polite"});
    el.cancel.addEventListener("click", () => this.cancel());
    el.resubmit.addEventListener("click", () => this.resubmit());
    el.replay.addEventListener("click", () => this.replay(null, el.replay));

    el.player = h("div", {class: "player", id: "player"});
    el.placeholderText = h("p", {}, "Waiting for the video…");
    el.placeholderBar = h("progress", {max: "1"});
    el.placeholder = h("div", {class: "placeholder"}, el.placeholderText, el.placeholderBar);
    el.player.append(el.placeholder);
    el.fileMeta = h("p", {class: "file-meta"});

    el.progressBar = h("progress", {max: "1", "aria-label": "Progress"});
    el.progressPct = h("strong", {}, "0%");
    el.progressText = h("span", {class: "muted"});
    el.elapsed = h("span", {class: "muted"});
    el.error = h("div", {class: "error-box", hidden: true, role: "alert"});

    el.phasebar = s("svg", {class: "phasebar", viewBox: "0 0 1000 12", preserveAspectRatio: "none", role: "img", "aria-label": "Time spent in each phase"});
    el.timeline = h("ol", {class: "timeline", id: "timeline"});
    el.runs = h("div", {id: "runs"});
    el.params = h("dl", {class: "params", id: "params"});

    fill(this.root,
      h("a", {class: "back", href: "#jobs"}, "← All jobs"),
      h("div", {class: "job-head"},
        h("div", {class: "job-title"}, el.title, el.id,
          h("div", {class: "job-badges"}, el.model, el.status, el.attempt, el.group)),
        h("div", {class: "job-actions"}, el.cancel, el.resubmit, el.replay, el.note)),
      h("div", {class: "job-grid"},
        h("div", {},
          h("div", {}, el.player, el.fileMeta),
          h("div", {class: "card"},
            h("h2", {}, "Progress"),
            h("div", {class: "progress-line"}, el.progressBar, el.progressPct),
            h("p", {}, el.progressText, " ", el.elapsed),
            el.error),
          h("div", {class: "card"}, h("h2", {}, "Timeline"), el.phasebar, el.timeline)),
        h("div", {},
          h("div", {class: "card"}, h("h2", {}, "Handlers"), el.runs),
          h("div", {class: "card"}, h("h2", {}, "Parameters"), el.params))),
    );
  }

  update(job) {
    const el = this.el;
    const first = !this.job;
    this.job = job;
    const text = promptOf(job);
    setText(el.title, text || `${this.app.label(job.model)} (no prompt)`);
    el.title.classList.toggle("muted", !text);
    setText(el.model, this.app.label(job.model));
    setPill(el.status, job.status);
    setText(el.attempt, job.attempt > 1 ? `attempt ${job.attempt}` : "");
    el.group.hidden = !job.group_id;
    if (job.group_id) el.group.href = `#group=${encodeURIComponent(job.group_id)}`;
    el.cancel.hidden = TERMINAL.has(job.status);
    el.replay.disabled = !(job.handlers || []).length;

    el.progressBar.value = job.progress || 0;
    el.progressBar.className = `s-${job.status}`;
    setText(el.progressPct, percent(job.progress));
    setText(el.progressText, job.progress_text || statusLabel(job.status));
    setText(el.elapsed, `· ${TERMINAL.has(job.status) ? "took" : "for"} ${span(elapsedOf(job))}`);
    const words = explain(job);
    el.error.hidden = !words;
    if (words) fill(el.error, h("strong", {}, words[0]), h("p", {}, words[1]), h("p", {class: "muted"}, words[2]));

    this.player(job);
    this.timeline(job);
    this.handlers(job);
    fill(el.params, paramRows(job, this.app));
    if (first) document.title = `${text ? text.slice(0, 40) : job.model} · runway-relay`;
    clearTimeout(this.poll);
    if (TERMINAL.has(job.status) && handlersBusy(job)) {
      this.poll = setTimeout(() => this.refresh(), this.pollDelay);
      this.pollDelay = Math.min(2000, this.pollDelay * 1.5);
    } else {
      this.pollDelay = 400;
    }
  }

  /** The video, created once: never rebuilt by an update, so playback never jumps back. */
  player(job) {
    const el = this.el;
    const src = localVideo(job);
    if (this.video) return;
    el.player.hidden = TERMINAL.has(job.status) && job.status !== "succeeded"; // nothing will ever play
    el.player.classList.toggle("idle", job.status !== "succeeded");
    if (src) {
      this.video = h("video", {controls: true, preload: "metadata", playsinline: true, src, id: "job-video"});
      el.player.replaceChildren(this.video);
      const art = job.artifacts.find(a => a.path);
      setText(el.fileMeta, `${art.path.split(/[\\/]/).pop()} · ${(art.size / 1024).toFixed(0)} KiB · sha256 ${art.sha256}`);
      return;
    }
    const preview = (job.artifacts || []).find(a => a.preview_url)?.preview_url;
    if (preview && !el.poster) {
      el.poster = h("img", {class: "poster", src: preview, alt: ""});
      el.player.prepend(el.poster);
    }
    el.placeholderBar.value = job.progress || 0;
    el.placeholderBar.hidden = TERMINAL.has(job.status);
    let words = `${statusLabel(job.status)} · ${percent(job.progress)}`;
    if (job.status === "succeeded") {
      const download = (job.handlers || []).find(r => r.name === "download");
      words = !download ? "Done. The download handler is off, so the video stays upstream."
        : download.status === "dead" ? `The download gave up: ${download.last_error || "see Handlers"}`
          : "Done. Downloading the video…";
    } else if (TERMINAL.has(job.status)) {
      words = `${statusLabel(job.status)}: no video.`;
    } else if (job.status === "queued") {
      words = "Queued, waiting for a slot…";
    }
    setText(el.placeholderText, words);
  }

  timeline(job) {
    const el = this.el;
    const entries = job.timeline || [];
    const phases = entries.filter(e => e.kind === "phase" && e.seconds);
    const total = phases.reduce((n, e) => n + e.seconds, 0) || 1;
    let x = 0;
    fill(el.phasebar, phases.map(e => {
      const width = (e.seconds / total) * 1000;
      const rect = s("rect", {x: x.toFixed(1), y: "0", width: Math.max(width, 2).toFixed(1), height: "12", class: `ph-${e.state}`},
        s("title", {}, `${e.label}: ${span(e.seconds)}`));
      x += width;
      return rect;
    }));
    this.ongoing = null;
    fill(el.timeline, entries.map(e => {
      const when = h("time", {class: "t-when", datetime: e.at, title: exact(e.at)}, clock(e.at));
      if (e.kind === "note") {
        return h("li", {class: "t-note"}, h("span", {class: "dot"}),
          h("div", {class: "t-line"}, h("span", {}, e.label), when),
          e.detail ? h("div", {class: "t-detail"}, e.detail) : null);
      }
      const spent = h("span", {class: "t-spent"},
        e.seconds === null || e.seconds === undefined ? "" : e.ongoing ? `${span(e.seconds)} so far` : span(e.seconds));
      if (e.ongoing) this.ongoing = {spent, at: e.at};
      const label = e.attempt > 1 && e.state === "queued" ? `${e.label} (attempt ${e.attempt})` : e.label;
      return h("li", {class: `t-phase${e.ongoing ? " t-ongoing" : ""}`, dataset: {state: e.rest ? "throttled" : e.state}},
        h("span", {class: `dot d-${e.state}`}),
        h("div", {class: "t-line"}, h("span", {class: "t-label"}, label), h("span", {}, spent, " ", when)),
        e.detail ? h("div", {class: "t-detail"}, e.detail) : null);
    }));
  }

  handlers(job) {
    const el = this.el;
    const runs = job.handlers || [];
    if (!runs.length) {
      fill(el.runs, h("p", {class: "muted"}, TERMINAL.has(job.status)
        ? "No handler ran for this job."
        : "Handlers run when the job moves: download on success, resubmit on failure, notifications…"));
      return;
    }
    for (const details of el.runs.querySelectorAll("details[open]")) this.openHistory.add(details.dataset.run);
    const tries = job.handler_attempts || [];
    const rows = [];
    for (const run of runs) {
      const result = run.status === "done" ? run.output || "done"
        : run.last_error ? run.last_error
          : run.status === "running" ? "running…" : run.status === "pending" ? "waiting to run…" : "";
      const replay = h("button", {type: "button", class: "btn small", dataset: {replay: run.name}}, "Replay");
      replay.addEventListener("click", () => this.replay(run.name, replay));
      rows.push(h("tr", {dataset: {run: String(run.id)}},
        h("td", {}, h("strong", {}, run.name), h("div", {class: "faint"}, run.signal)),
        h("td", {}, pill(run.status)),
        h("td", {}, String(run.attempts)),
        h("td", {class: "result"}, result),
        h("td", {}, replay)));
      const history = tries.filter(t => t.run_id === run.id);
      if (history.length) rows.push(h("tr", {class: "history"}, h("td", {colspan: "5"}, this.history(run, history))));
    }
    fill(el.runs, h("table", {class: "runs"},
      h("thead", {}, h("tr", {}, ["Handler", "Status", "Tries", "Result", ""].map(t => h("th", {scope: "col"}, t)))),
      h("tbody", {}, rows)));
  }

  history(run, tries) {
    const rounds = new Set(tries.map(t => t.round)).size - 1;
    const details = h("details", {dataset: {run: String(run.id)}},
      h("summary", {}, `History: ${tries.length} ${tries.length === 1 ? "try" : "tries"}${rounds ? `, ${rounds} ${rounds === 1 ? "replay" : "replays"}` : ""}`),
      h("ol", {}, tries.map(t => {
        const took = (parseTime(t.finished_at) - parseTime(t.started_at)) / 1000;
        return h("li", {},
          h("b", {}, t.round ? `Replay ${t.round}, try ${t.attempt}` : `Try ${t.attempt}`), " ",
          pill(t.outcome === "failed" ? "failed" : t.outcome), " ",
          t.output || t.error || "", " ",
          h("span", {class: "faint", title: exact(t.finished_at)}, `· ${clock(t.finished_at)}, took ${span(took)}`));
      })));
    details.open = this.openHistory.has(String(run.id));
    details.addEventListener("toggle", () => {
      if (details.open) this.openHistory.add(details.dataset.run);
      else this.openHistory.delete(details.dataset.run);
    });
    return details;
  }

  note(text) {
    setText(this.el.note, text);
  }

  async cancel() {
    const id = this.id;
    await busy(this.el.cancel, async () => {
      try {
        await api(`/api/jobs/${encodeURIComponent(id)}/cancel`, {method: "POST"});
        this.note("Cancelled. Its slot upstream was freed.");
        toast("Job cancelled.");
        await this.refresh();
      } catch (error) {
        this.note(`Not cancelled: ${error.message}`);
      }
    });
  }

  async resubmit() {
    const original = this.job;
    await busy(this.el.resubmit, async () => {
      try {
        const job = await api("/api/jobs", {method: "POST", json: original.params});
        toast("Re-submitted as a new job.", {link: ["Back to the original", `#job=${encodeURIComponent(original.id)}`]});
        this.app.go(`#job=${encodeURIComponent(job.id)}`);
        setText(this.el.note, `A copy of ${original.id}, just queued.`);
      } catch (error) {
        this.note(`Not re-submitted: ${error.message}`);
      }
    });
  }

  async replay(handler, button) {
    await busy(button, async () => {
      try {
        const path = `/api/jobs/${encodeURIComponent(this.id)}/replay${handler ? `?handler=${encodeURIComponent(handler)}` : ""}`;
        const answer = await api(path, {method: "POST"});
        const names = answer.replayed.map(r => r.name).join(", ");
        this.note(`Replaying ${names}. Each try is kept in the history below.`);
        toast(`Replaying ${names}.`);
        this.pollDelay = 300;
        await this.refresh();
      } catch (error) {
        this.note(`Not replayed: ${error.message}`);
      }
    });
  }

  tick() {
    if (!this.job) return;
    if (this.ongoing) setText(this.ongoing.spent, `${span((Date.now() - parseTime(this.ongoing.at)) / 1000)} so far`);
    if (!TERMINAL.has(this.job.status)) setText(this.el.elapsed, `· for ${span(elapsedOf(this.job))}`);
  }
}
