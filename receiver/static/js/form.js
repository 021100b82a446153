// The submit form, generated from the model rules (GET /api/models, i.e. relay/rules.py): only the
// fields the chosen model takes, each marked required or optional, with the model's own choices.
// The relay validates again; every problem of a refused submit is shown at its field.

import {api} from "./api.js";
import {assetField} from "./assets.js";
import {$, fill, h, setText, toast} from "./dom.js";

const RATIO_WORDS = {"16:9": "16:9 landscape", "9:16": "9:16 portrait", "1:1": "1:1 square", "4:3": "4:3", "3:4": "3:4", "21:9": "21:9 cinema"};

function marker(required) {
  return required ? h("span", {class: "req"}, "required") : h("span", {class: "opt"}, "optional");
}

function errorSlot(name) {
  return h("p", {class: "field-error", id: `err-${name}`, hidden: true});
}

function field(name, label, control, {required = null, hint = null} = {}) {
  const described = [hint ? `hint-${name}` : null, `err-${name}`].filter(Boolean).join(" ");
  if (control.matches?.("input, select, textarea")) control.setAttribute("aria-describedby", described);
  return h("div", {class: "field", dataset: {field: name}},
    h("label", {for: control.id || name}, label, required === null ? null : marker(required)),
    control,
    hint ? h("p", {class: "hint", id: `hint-${name}`}, hint) : null,
    errorSlot(name));
}

function select(id, options, value) {
  const el = h("select", {id, name: id}, options.map(([v, text]) => h("option", {value: v}, text)));
  if (options.some(([v]) => String(v) === String(value))) el.value = String(value);
  return el;
}

/** Plain words for a model's rules (the side card and the line under the model). */
export function describe(rule) {
  const durations = rule.duration_range
    ? `${rule.duration_range[0]}–${rule.duration_range[1]} s (any whole number)`
    : rule.durations.length ? rule.durations.map(d => `${d} s`).join(", ") : "automatic";
  const t2v = rule.aspect_ratios_t2v.join(", "), i2v = rule.aspect_ratios_i2v.join(", ");
  const ratios = !t2v && !i2v ? "follows the image" : t2v === i2v ? t2v : `${t2v} (text only); with an image ${i2v}`;
  const images = rule.image_required ? "1 required" : rule.max_images ? `optional (up to ${rule.max_images})` : "none";
  return {
    Duration: durations,
    "Aspect ratio": ratios,
    Resolution: rule.resolutions.length ? rule.resolutions.join(", ") : "automatic",
    Image: images + (rule.end_frame ? "; end frame supported" : ""),
    "Reference video": rule.video_required ? "1 required" : "not used",
    Prompt: rule.text_prompt === "unsupported" ? "not used" : `${rule.text_prompt}, up to ${rule.prompt_max} characters`,
    Audio: {on: "on by default (can be turned off)", always: "always on", unsupported: "none"}[rule.audio],
    Seed: rule.seed ? "can be set" : "automatic",
    "Explore mode": rule.explore_mode ? "available" : "not supported",
    "Multi-shot": rule.multishot ? `${rule.multishot.shots[0]}–${rule.multishot.shots[1]} shots, ${rule.multishot.total_max} s in all` : "no",
  };
}

export class SubmitView {
  constructor(app) {
    this.app = app;
    this.form = $("#submit");
    this.state = {
      values: {}, previews: {}, accounts: {},
      prompt: "", duration: null, aspect: null, resolution: null, audio: true, seed: "", explore: false,
      multishot: false, shots: [{prompt: "", duration: 5}, {prompt: "", duration: 5}], email: "",
    };
    const model = $("#model");
    fill(model, app.models.map(m => h("option", {value: m.name}, `${m.label} · ${m.name}`)));
    model.addEventListener("change", () => this.render());
    this.form.addEventListener("submit", event => {
      event.preventDefault();
      this.submit();
    });
  }

  show(params) {
    const wanted = params.get("model");
    if (wanted && this.app.rules.has(wanted)) $("#model").value = wanted;
    if (!this.rendered || wanted) this.render();
    this.rendered = true;
  }

  get rule() {
    return this.app.rules.get($("#model").value);
  }

  render() {
    const rule = this.rule;
    const st = this.state;
    this.clearErrors();
    setText($("#model-summary"), this.summary(rule));
    const rules = describe(rule);
    fill($("#rules"), Object.entries(rules).map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
    setText($("#rules-title"), `What ${rule.label} takes`);
    const onAssets = () => this.assetsChanged();
    const sections = [];

    // The prompt, and multi-shot (its shots carry prompts of their own).
    const prompt = [];
    if (rule.text_prompt === "unsupported") {
      prompt.push(h("p", {class: "hint", id: "no-prompt"}, `${rule.label} takes no text prompt: it animates the image with the motion of the reference video.`));
    } else {
      const area = h("textarea", {id: "prompt", name: "text_prompt", rows: "4", maxlength: String(rule.prompt_max),
        placeholder: "Describe the shot: subject, action, camera, light…"});
      area.value = st.prompt.slice(0, rule.prompt_max);
      const counter = h("p", {class: "counter", id: "prompt-counter", "aria-live": "off"});
      const count = () => {
        st.prompt = area.value;
        setText(counter, `${area.value.length} / ${rule.prompt_max}`);
        counter.classList.toggle("over", area.value.length >= rule.prompt_max);
      };
      area.addEventListener("input", count);
      count();
      const required = rule.text_prompt === "required";
      const box = field("text_prompt", "Prompt", area, {required});
      box.insertBefore(counter, box.querySelector(".field-error"));
      prompt.push(box);
    }
    if (rule.multishot) prompt.push(this.multishot(rule));
    sections.push(h("fieldset", {}, h("legend", {}, "What to generate"), prompt));

    // Frames and reference video.
    const frames = [];
    if (rule.max_images) {
      frames.push(assetField({name: "imageAssetId1", label: rule.end_frame ? "Start frame" : "Image",
        required: rule.image_required, kind: "image", state: st, onChange: onAssets, account: () => st.email,
        hint: rule.image_required ? `${rule.label} starts from this image.` : "Optional: start the video from this image."}));
    }
    if (rule.end_frame) {
      frames.push(assetField({name: "imageAssetId2", label: "End frame", required: false, kind: "image", state: st,
        onChange: onAssets, account: () => st.email, hint: "Optional: the video ends on this image (needs a start frame)."}));
    }
    if (rule.video_required) {
      frames.push(assetField({name: "videoAssetId", label: "Reference video", required: true, kind: "video", state: st,
        onChange: onAssets, account: () => st.email, hint: "The motion to copy onto the image."}));
    }
    if (frames.length) sections.push(h("fieldset", {}, h("legend", {}, "Images and video"), frames));

    // Length, shape and sound.
    const video = [this.durationField(rule), h("div", {id: "aspect-slot"}), this.resolutionField(rule), this.audioField(rule)];
    sections.push(h("fieldset", {}, h("legend", {}, "Video"), h("div", {class: "row"}, video)));

    // Advanced.
    const advanced = [];
    if (rule.seed) {
      const seed = h("input", {id: "seed", name: "seed", type: "number", inputmode: "numeric", min: String(rule.seed_range[0]),
        max: String(rule.seed_range[1]), step: "1", placeholder: "random"});
      seed.value = st.seed;
      seed.addEventListener("input", () => (st.seed = seed.value));
      advanced.push(field("seed", "Seed", seed, {required: false, hint: `${rule.seed_range[0]}–${rule.seed_range[1]}; the same seed and inputs give a similar video.`}));
    }
    advanced.push(this.exploreField(rule));
    const account = select("email", [["", "Any free account"], ...this.app.accounts.map(a => [a, a])], st.email);
    account.addEventListener("change", () => (st.email = account.value));
    advanced.push(field("email", "Runway account", account, {required: false, hint: "Leave it to the relay unless the assets live on one account."}));
    sections.push(h("fieldset", {}, h("legend", {}, "Advanced"), h("div", {class: "row"}, advanced)));

    fill($("#fields"), sections);
    this.aspectField();
    this.shotsChanged();
  }

  summary(rule) {
    const d = describe(rule);
    const bits = [`${d.Duration}`, rule.text_prompt === "required" ? "prompt required" : rule.text_prompt === "optional" ? "prompt optional" : "no prompt"];
    if (rule.image_required) bits.push("image required");
    if (rule.video_required) bits.push("reference video required");
    if (rule.multishot) bits.push("multi-shot");
    return bits.join(" · ");
  }

  durationField(rule) {
    const st = this.state;
    const wrap = h("div", {id: "duration-slot"});
    if (!rule.durations.length) {
      wrap.append(h("div", {class: "field"}, h("span", {class: "label"}, "Duration"),
        h("p", {class: "hint", id: "duration-auto"}, rule.video_required ? "Automatic: as long as the reference video." : "Automatic."),
        errorSlot("duration")));
      return wrap;
    }
    if (rule.duration_range) {
      const [low, high] = rule.duration_range;
      const value = Math.min(high, Math.max(low, Number(st.duration) || rule.default_duration));
      const slider = h("input", {type: "range", id: "duration-range", min: String(low), max: String(high), step: "1", "aria-label": "Duration in seconds"});
      const number = h("input", {type: "number", id: "duration", name: "duration", min: String(low), max: String(high), step: "1"});
      slider.value = number.value = String(value);
      slider.addEventListener("input", () => { number.value = slider.value; st.duration = Number(slider.value); });
      number.addEventListener("input", () => { slider.value = number.value; st.duration = Number(number.value); });
      st.duration = value;
      const box = field("duration", "Duration (s)", number, {required: false, hint: `${low} to ${high} seconds`});
      const range = h("div", {class: "range"});
      number.replaceWith(range);
      range.append(slider, number);
      wrap.append(box);
    } else {
      const value = rule.durations.includes(Number(st.duration)) ? st.duration : rule.default_duration;
      const control = select("duration", rule.durations.map(d => [d, `${d} s`]), value);
      st.duration = Number(control.value);
      control.addEventListener("change", () => (st.duration = Number(control.value)));
      wrap.append(field("duration", "Duration", control, {required: false}));
    }
    return wrap;
  }

  aspectField() {
    const rule = this.rule;
    const st = this.state;
    const slot = $("#aspect-slot");
    const withImage = Boolean(st.values.imageAssetId1);
    const ratios = withImage ? rule.aspect_ratios_i2v : rule.aspect_ratios_t2v;
    if (!ratios.length) {
      fill(slot, h("div", {class: "field"}, h("span", {class: "label"}, "Aspect ratio"),
        h("p", {class: "hint", id: "aspect-auto"}, "Follows the image."), errorSlot("aspect_ratio")));
      return;
    }
    const control = select("aspect_ratio", ratios.map(r => [r, RATIO_WORDS[r] || r]), st.aspect);
    st.aspect = control.value;
    control.addEventListener("change", () => (st.aspect = control.value));
    let hint = null;
    if (rule.aspect_ratios_t2v.join() !== rule.aspect_ratios_i2v.join()) {
      hint = withImage ? "With an image every ratio is open." : `Text only: ${rule.aspect_ratios_t2v.join(", ")}. Add an image for ${rule.aspect_ratios_i2v.length} ratios.`;
    }
    fill(slot, field("aspect_ratio", "Aspect ratio", control, {required: false, hint}));
  }

  resolutionField(rule) {
    if (!rule.resolutions.length) return null;
    const st = this.state;
    const control = select("resolution", rule.resolutions.map(r => [r, r]), st.resolution);
    st.resolution = control.value;
    control.addEventListener("change", () => (st.resolution = control.value));
    return field("resolution", "Resolution", control, {required: false, hint: rule.resolutions.length === 1 ? `${rule.label} renders ${rule.resolutions[0]} only.` : null});
  }

  audioField(rule) {
    if (rule.audio === "unsupported") return null;
    const st = this.state;
    const box = h("input", {type: "checkbox", id: "audio", name: "audio"});
    box.checked = rule.audio === "always" ? true : st.audio;
    box.disabled = rule.audio === "always";
    box.addEventListener("change", () => (st.audio = box.checked));
    return h("div", {class: "field", dataset: {field: "audio"}},
      h("span", {class: "label"}, "Audio"),
      h("label", {class: "check", for: "audio"}, box, h("span", {}, rule.audio === "always" ? `Always on for ${rule.label}` : "Generate sound")),
      errorSlot("audio"));
  }

  exploreField(rule) {
    const st = this.state;
    if (!rule.explore_mode) {
      return h("div", {class: "field"}, h("span", {class: "label"}, "Explore mode"),
        h("p", {class: "hint", id: "explore-off"}, `Not available for ${rule.label}.`), errorSlot("exploreMode"));
    }
    const box = h("input", {type: "checkbox", id: "exploreMode", name: "exploreMode"});
    box.checked = st.explore;
    box.addEventListener("change", () => (st.explore = box.checked));
    return h("div", {class: "field", dataset: {field: "exploreMode"}},
      h("span", {class: "label"}, "Explore mode"),
      h("label", {class: "check", for: "exploreMode"}, box, h("span", {}, "Use Explore mode (Unlimited plan: no credits, slower)")),
      errorSlot("exploreMode"));
  }

  multishot(rule) {
    const st = this.state;
    const spec = rule.multishot;
    const toggle = h("input", {type: "checkbox", id: "multishot"});
    toggle.checked = st.multishot;
    const list = h("div", {class: "shots", id: "shots"});
    const total = h("p", {class: "shots-total", id: "shots-total", "aria-live": "polite"});
    const add = h("button", {type: "button", class: "btn small", id: "shot-add"}, "Add a shot");
    const editor = h("div", {id: "shots-editor", hidden: !st.multishot}, list, h("div", {class: "actions"}, add, total));
    const draw = () => {
      fill(list, st.shots.map((shot, i) => {
        const n = i + 1;
        const text = h("textarea", {id: `multishot_prompt_${n}`, rows: "2", maxlength: String(spec.prompt_max),
          "aria-describedby": `err-multishot_prompt_${n}`, placeholder: `What happens in shot ${n}`});
        text.value = shot.prompt;
        text.addEventListener("input", () => (shot.prompt = text.value));
        const seconds = h("input", {id: `multishot_duration_${n}`, type: "number", min: String(spec.shot_duration[0]),
          max: String(spec.shot_duration[1]), step: "1", "aria-describedby": `err-multishot_duration_${n}`});
        seconds.value = String(shot.duration);
        seconds.addEventListener("input", () => { shot.duration = seconds.value; this.shotsChanged(); });
        const remove = h("button", {type: "button", class: "btn small ghost remove", disabled: st.shots.length <= spec.shots[0]}, "Remove");
        remove.addEventListener("click", () => { st.shots.splice(i, 1); draw(); this.shotsChanged(); });
        return h("div", {class: "shot"},
          h("div", {class: "field"}, h("label", {for: text.id}, `Shot ${n} prompt`, marker(true)), text, errorSlot(`multishot_prompt_${n}`)),
          h("div", {class: "field"}, h("label", {for: seconds.id}, "Seconds"), seconds, errorSlot(`multishot_duration_${n}`)),
          remove);
      }));
      add.disabled = st.shots.length >= spec.shots[1];
    };
    add.addEventListener("click", () => {
      st.shots.push({prompt: "", duration: spec.shot_duration[0]});
      draw();
      this.shotsChanged();
      $(`#multishot_prompt_${st.shots.length}`).focus();
    });
    toggle.addEventListener("change", () => {
      st.multishot = toggle.checked;
      editor.hidden = !toggle.checked;
      this.shotsChanged();
    });
    draw();
    return h("div", {class: "field", dataset: {field: "multishot"}},
      h("label", {class: "check", for: "multishot"}, toggle,
        h("span", {}, `Multi-shot: ${spec.shots[0]}–${spec.shots[1]} shots of ${spec.shot_duration[0]}–${spec.shot_duration[1]} s, ${spec.total_max} s in all`)),
      editor);
  }

  shotsChanged() {
    const rule = this.rule;
    const slot = $("#duration-slot");
    if (!rule.multishot) {
      if (slot) slot.hidden = false;
      return;
    }
    const st = this.state;
    slot.hidden = st.multishot; // the shots set the length
    const sum = st.shots.reduce((n, s) => n + (Number(s.duration) || 0), 0);
    const total = $("#shots-total");
    setText(total, `Total ${sum} s of at most ${rule.multishot.total_max} s`);
    total.classList.toggle("over", sum > rule.multishot.total_max);
  }

  assetsChanged() {
    this.aspectField();
  }

  body() {
    const rule = this.rule;
    const st = this.state;
    const body = {model: rule.name};
    if (rule.text_prompt !== "unsupported" && st.prompt.trim()) body.text_prompt = st.prompt;
    if (rule.durations.length && !(rule.multishot && st.multishot)) {
      const value = $("#duration").value;
      body.duration = /^\d+$/.test(value) ? Number(value) : value;
    }
    const aspect = $("#aspect_ratio");
    if (aspect) body.aspect_ratio = aspect.value;
    const resolution = $("#resolution");
    if (resolution) body.resolution = resolution.value;
    if (rule.audio === "on") body.audio = $("#audio").checked;
    if (rule.seed && st.seed !== "") body.seed = /^\d+$/.test(st.seed) ? Number(st.seed) : st.seed;
    for (const name of ["imageAssetId1", "imageAssetId2", "videoAssetId"]) {
      if ($(`#${name}`) && st.values[name]) body[name] = st.values[name];
    }
    if (rule.explore_mode && st.explore) body.exploreMode = true;
    if (rule.multishot && st.multishot) {
      st.shots.forEach((shot, i) => {
        if (shot.prompt.trim()) body[`multishot_prompt_${i + 1}`] = shot.prompt;
        if (String(shot.duration) !== "") body[`multishot_duration_${i + 1}`] = Number(shot.duration);
      });
    }
    if (st.email) body.email = st.email;
    return body;
  }

  clearErrors() {
    for (const el of this.form.querySelectorAll(".field-error")) {
      el.hidden = true;
      el.textContent = "";
    }
    for (const el of this.form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
    const box = $("#form-error");
    box.hidden = true;
    box.replaceChildren();
  }

  /** Every problem at its field; those without a field on this form listed above the button. */
  showProblems(error) {
    this.clearErrors();
    const problems = error.problems.length ? error.problems : [{field: null, error: error.message}];
    const loose = [];
    let first = null;
    for (const problem of problems) {
      const slot = problem.field && document.getElementById(`err-${problem.field}`);
      if (!slot) {
        loose.push(problem);
        continue;
      }
      slot.hidden = false;
      slot.textContent = slot.textContent ? `${slot.textContent} ${problem.error}` : problem.error;
      const input = document.getElementById(problem.field === "text_prompt" ? "prompt" : problem.field)
        || document.getElementById(`${problem.field}-file`);
      if (input) {
        input.setAttribute("aria-invalid", "true");
        first = first || input;
      }
      if (problem.field === "imageAssetId1" || problem.field === "imageAssetId2" || problem.field === "videoAssetId") {
        document.getElementById(`${problem.field}-file`)?.setAttribute("aria-invalid", "true");
      }
    }
    const box = $("#form-error");
    box.hidden = false;
    const count = problems.length === 1 ? "1 problem" : `${problems.length} problems`;
    fill(box, h("strong", {}, `Not submitted: ${count}${loose.length < problems.length ? ", shown at the fields" : ""}.`),
      loose.length ? h("ul", {}, loose.map(p => h("li", {}, p.field ? `${p.field}: ${p.error}` : p.error))) : null);
    (first || box).focus?.();
  }

  async submit() {
    const button = $("#submit-button");
    const status = $("#submit-status");
    button.disabled = true;
    setText(status, "Submitting…");
    try {
      const job = await api("/api/jobs", {method: "POST", json: this.body()});
      this.clearErrors();
      setText(status, "");
      toast(`Queued on ${this.rule.label}.`);
      this.app.go(`#job=${encodeURIComponent(job.id)}`);
    } catch (error) {
      setText(status, "");
      if (error.status === 422 || error.status === 400) this.showProblems(error);
      else toast(`Not submitted: ${error.message}`, {error: true});
    } finally {
      button.disabled = false;
    }
  }
}
