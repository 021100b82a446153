// Compare: one prompt to several models as a group (POST /api/groups), then the group's videos side
// by side, played in sync (the first video leads; the others follow its play, pause, seek and time).

import {api} from "./api.js";
import {
  $, TERMINAL, busy, elapsedOf, fill, h, handlersBusy, localVideo, percent, pill, promptOf, setPill, setText, span, toast,
} from "./dom.js";

const DEFAULT_PICK = ["veo-3.1", "kling-3.0-pro", "sora-2"];
const DRIFT = 0.25; // seconds a follower may drift from the leader

function choices(rule) {
  if (rule.duration_range) {
    const [low, high] = rule.duration_range;
    return Array.from({length: high - low + 1}, (_, i) => low + i);
  }
  return rule.durations;
}

function intersect(lists) {
  if (!lists.length) return [];
  return lists.reduce((a, b) => a.filter(x => b.map(String).includes(String(x))));
}

export class CompareView {
  constructor(app) {
    this.app = app;
    this.form = $("#compare-form");
    this.picked = new Set(DEFAULT_PICK.filter(m => app.rules.has(m)));
    this.form.addEventListener("submit", event => {
      event.preventDefault();
      this.submit();
    });
    this.build();
  }

  usable(rule) {
    return rule.text_prompt !== "unsupported" && !rule.image_required;
  }

  build() {
    const prompt = h("textarea", {id: "compare-prompt", rows: "3", required: true, "aria-describedby": "compare-prompt-hint",
      placeholder: "One prompt for every model, e.g. a paper boat drifting down a rainy street"});
    this.prompt = prompt;
    const boxes = this.app.models.map(rule => {
      const ok = this.usable(rule);
      const box = h("input", {type: "checkbox", name: "models", value: rule.name, id: `cmp-${rule.name.replace(/\./g, "_")}`, disabled: !ok});
      box.checked = ok && this.picked.has(rule.name);
      box.addEventListener("change", () => {
        if (box.checked) this.picked.add(rule.name);
        else this.picked.delete(rule.name);
        this.options();
      });
      return h("label", {class: "check", for: box.id, title: ok ? "" : "Needs an image or takes no prompt"}, box,
        h("span", {}, rule.label), h("small", {}, ok ? rule.name : "needs an image"));
    });
    this.duration = h("select", {id: "compare-duration"});
    this.aspect = h("select", {id: "compare-aspect"});
    this.error = h("div", {class: "form-error", id: "compare-error", role: "alert", hidden: true});
    this.hint = h("p", {class: "hint", id: "compare-prompt-hint"});
    this.button = h("button", {type: "submit", class: "btn primary", id: "compare-submit"}, "Compare");
    fill(this.form,
      h("div", {class: "field"}, h("label", {for: "compare-prompt"}, "Prompt", h("span", {class: "req"}, "required")), prompt, this.hint),
      h("fieldset", {}, h("legend", {}, "Models"), h("div", {class: "models-pick"}, boxes)),
      h("div", {class: "row"},
        h("div", {class: "field"}, h("label", {for: "compare-duration"}, "Duration"), this.duration,
          h("p", {class: "hint"}, "Only lengths every chosen model offers.")),
        h("div", {class: "field"}, h("label", {for: "compare-aspect"}, "Aspect ratio"), this.aspect)),
      this.error,
      h("div", {class: "actions"}, this.button));
    this.options();
  }

  /** Duration, aspect ratio and prompt length: what every chosen model accepts. */
  options() {
    const rules = [...this.picked].map(m => this.app.rules.get(m)).filter(Boolean);
    const keep = (select, values, words) => {
      const old = select.value;
      fill(select, h("option", {value: ""}, "Each model's default"), values.map(v => h("option", {value: String(v)}, words(v))));
      if (values.map(String).includes(old)) select.value = old;
    };
    keep(this.duration, intersect(rules.map(choices)), v => `${v} s`);
    keep(this.aspect, intersect(rules.map(r => r.aspect_ratios_t2v)), v => v);
    const max = Math.min(...rules.map(r => r.prompt_max), 5000);
    this.prompt.maxLength = max;
    setText(this.hint, rules.length ? `Up to ${max} characters (the shortest limit of the chosen models).` : "Choose two or more models.");
    this.button.disabled = rules.length < 2;
  }

  show() {
    this.prompt.focus({preventScroll: true});
  }

  async submit() {
    this.error.hidden = true;
    const models = this.app.models.map(m => m.name).filter(name => this.picked.has(name)); // as listed
    const body = {models, text_prompt: this.prompt.value};
    if (this.duration.value) body.duration = Number(this.duration.value);
    if (this.aspect.value) body.aspect_ratio = this.aspect.value;
    await busy(this.button, async () => {
      try {
        const group = await api("/api/groups", {method: "POST", json: body});
        toast(`Sent to ${group.jobs.length} models.`);
        this.app.go(`#group=${encodeURIComponent(group.group_id)}`);
      } catch (error) {
        const problems = error.problems.length ? error.problems : [{error: error.message}];
        this.error.hidden = false;
        fill(this.error, h("strong", {}, "Not sent; nothing was stored:"), h("ul", {}, problems.map(p => h("li", {}, p.error))));
      }
    });
  }
}

export class GroupView {
  constructor(app) {
    this.app = app;
    this.root = $("#group");
    this.id = null;
    this.cards = new Map();
    this.poll = null;
  }

  show(params) {
    const id = params.get("group");
    if (id === this.id) return this.load();
    this.id = id;
    this.cards.clear();
    this.leader = null;
    this.build();
    this.load();
  }

  hide() {
    clearTimeout(this.poll);
    for (const card of this.cards.values()) card.video?.pause();
    this.id = null;
  }

  resync() {
    if (this.id) this.load();
  }

  build() {
    this.title = h("h1", {id: "group-title"}, "Comparison");
    this.grid = h("div", {class: "group-grid", id: "group-grid"});
    this.playButton = h("button", {type: "button", class: "btn primary", id: "play-all", disabled: true}, "Play all in sync");
    this.pauseButton = h("button", {type: "button", class: "btn", id: "pause-all", disabled: true}, "Pause all");
    this.loop = h("input", {type: "checkbox", id: "loop-all"});
    this.loop.checked = true;
    this.ready = h("span", {class: "muted", id: "group-ready", "aria-live": "polite"});
    this.playButton.addEventListener("click", () => this.playAll());
    this.pauseButton.addEventListener("click", () => this.videos().forEach(v => v.pause()));
    this.loop.addEventListener("change", () => this.videos().forEach(v => (v.loop = this.loop.checked)));
    fill(this.root,
      h("a", {class: "back", href: "#compare"}, "← New comparison"),
      h("div", {class: "view-head"}, this.title),
      h("div", {class: "group-controls"}, this.playButton, this.pauseButton,
        h("label", {class: "check", for: "loop-all"}, this.loop, h("span", {}, "Loop")), this.ready),
      this.grid);
  }

  async load() {
    const id = this.id;
    let group;
    try {
      group = await api(`/api/groups/${encodeURIComponent(id)}`);
    } catch (error) {
      if (id === this.id) fill(this.grid, h("div", {class: "empty"}, h("h2", {}, "Cannot show this comparison"), h("p", {}, error.message)));
      return;
    }
    if (id !== this.id) return;
    setText(this.title, promptOf(group.jobs[0]) || "Comparison");
    for (const job of group.jobs) this.card(job);
    this.settle(group.jobs);
  }

  settle(jobs) {
    clearTimeout(this.poll);
    if (jobs.some(j => TERMINAL.has(j.status) && handlersBusy(j))) this.poll = setTimeout(() => this.load(), 700);
    const videos = this.videos();
    this.playButton.disabled = this.pauseButton.disabled = videos.length === 0;
    const done = jobs.filter(j => TERMINAL.has(j.status)).length;
    setText(this.ready, `${videos.length} of ${jobs.length} videos ready${done < jobs.length ? ` · ${jobs.length - done} still running` : ""}`);
  }

  card(job) {
    let card = this.cards.get(job.id);
    if (!card) {
      card = {
        status: pill(job.status),
        bar: h("progress", {max: "1"}),
        info: h("span", {class: "muted"}),
        player: h("div", {class: "player"}, h("div", {class: "placeholder"}, h("p", {}, "Waiting for the video…"))),
        video: null,
      };
      card.el = h("article", {class: "card group-card", dataset: {job: job.id}},
        h("header", {}, h("h2", {}, h("a", {href: `#job=${encodeURIComponent(job.id)}`}, this.app.label(job.model))), card.status),
        card.player, card.bar, card.info);
      this.cards.set(job.id, card);
      this.grid.append(card.el);
    }
    card.job = job;
    setPill(card.status, job.status);
    card.bar.value = job.progress || 0;
    card.bar.hidden = TERMINAL.has(job.status);
    setText(card.info, `${percent(job.progress)} · ${span(elapsedOf(job))}${job.error ? ` · ${job.error}` : ""}`);
    const src = localVideo(job);
    if (src && !card.video) {
      card.video = h("video", {controls: true, preload: "auto", playsinline: true, src, loop: this.loop.checked});
      card.video.muted = Boolean(this.leader); // one soundtrack at a time: the leader's
      card.player.replaceChildren(card.video);
      this.follow();
    } else if (!card.video && TERMINAL.has(job.status)) {
      setText(card.player.querySelector("p"), job.status === "succeeded" ? "Downloading the video…" : `${job.status}: no video`);
    }
  }

  onJob(job) {
    if (this.id && job.group_id === this.id) {
      this.card(job);
      this.settle([...this.cards.values()].map(c => c.job));
    }
  }

  videos() {
    return [...this.cards.values()].map(c => c.video).filter(Boolean);
  }

  /** The first video to arrive leads: the others follow its play, pause, seek and (within DRIFT) time. */
  follow() {
    if (this.leader) return;
    const leader = (this.leader = this.videos()[0]);
    const followers = () => this.videos().filter(v => v !== leader);
    leader.addEventListener("play", () => followers().forEach(v => v.play().catch(() => {})));
    leader.addEventListener("pause", () => followers().forEach(v => v.pause()));
    leader.addEventListener("seeked", () => followers().forEach(v => (v.currentTime = leader.currentTime)));
    leader.addEventListener("timeupdate", () => {
      for (const v of followers()) {
        const off = Math.abs(v.currentTime - leader.currentTime);
        if (off > DRIFT && leader.currentTime < v.duration) v.currentTime = leader.currentTime;
      }
    });
  }

  async playAll() {
    const videos = this.videos();
    for (const v of videos) {
      v.pause();
      v.currentTime = 0;
      v.loop = this.loop.checked;
    }
    videos.filter(v => v !== this.leader).forEach(v => (v.muted = true));
    await Promise.all(videos.map(v => v.play().catch(error => toast(`A video would not play: ${error.message}`, {error: true}))));
  }
}
