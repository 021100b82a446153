// The Runway accounts (GET /api/accounts): each one's state, slots in use and capacity, credits left,
// jobs today, its moderation count, a pause with its reason and end, being out of rotation, the last
// error, and Resume (POST /api/accounts/{email}/resume). /#accounts is the link Slack and Discord carry.

import {api} from "./api.js";
import {$, busy, clock, debounce, exact, fill, h, parseTime, pill, span, timeAgo, toast} from "./dom.js";

const STATES = {
  ok: ["succeeded", "OK"],
  resting: ["pending", "Resting"],
  paused: ["throttled", "Paused"],
  "no-credits": ["rejected", "No credits"],
  "out-of-rotation": ["failed", "Out of rotation"],
};

/** Whether the account needs someone to look at it. */
export function troubled(account) {
  return account.state === "paused" || account.state === "no-credits" || account.state === "out-of-rotation";
}

function amount(n) {
  return n === null || n === undefined ? "?" : Math.round(n).toLocaleString("en-US");
}

function slug(email) {
  return email.replace(/[^a-z0-9]+/gi, "-");
}

/** "11:02:11 (in 42 min)", the exact date on hover. */
function until(iso) {
  const left = (parseTime(iso) - Date.now()) / 1000;
  return h("time", {datetime: iso, title: exact(iso), class: "until"},
    `${clock(iso)}${Number.isFinite(left) && left > 0 ? ` (in ${span(left)})` : ""}`);
}

function statePill(account) {
  const [cls, text] = STATES[account.state] || ["queued", account.state];
  return pill(cls, text);
}

function credits(c) {
  if (c.left === null || c.permitted === null) return h("span", {class: "muted"}, "not read yet");
  const bar = h("progress", {max: String(Math.max(1, c.permitted)), class: c.low ? "s-failed" : "s-succeeded",
    "aria-label": "Credits left"});
  bar.value = c.left;
  return h("span", {class: "credits"}, h("span", {}, `${amount(c.left)} of ${amount(c.permitted)} left`,
    c.low ? h("strong", {class: "low"}, " — low") : null), bar);
}

export class AccountsView {
  constructor(app) {
    this.app = app;
    this.root = $("#accounts");
    this.guard = $("#accounts-guard");
    this.visible = false;
    this.timer = null;
    this.later = debounce(() => this.visible && this.load(), 1500);
  }

  show() {
    this.visible = true;
    this.load();
    clearInterval(this.timer);
    this.timer = setInterval(() => this.load(), 5000);  // a pause ends, credits move: no event says so
  }

  hide() {
    this.visible = false;
    clearInterval(this.timer);
  }

  onJob() {
    this.later();
  }

  resync() {
    if (this.visible) this.load();
  }

  async load() {
    let data;
    try {
      data = await api("/api/accounts");
    } catch (error) {
      fill(this.root, h("p", {class: "form-error"}, `Cannot load the accounts: ${error.message}`));
      return;
    }
    this.app.onAccounts?.(data);
    this.draw(data);
  }

  draw(data) {
    const guard = data.moderation_pause
      ? `An account is paused after ${data.moderation_pause.replace("/", " moderation failures within ")}`
      : "The moderation guard is off (RELAY_MODERATION_PAUSE=off)";
    const low = data.credits_low ? `; credits are low below ${data.credits_low}` : "";
    this.guard.textContent = `${guard}${low}. A paused account takes no new creates; jobs not pinned to it go to the others.`;
    if (!data.accounts.length) {
      fill(this.root, h("div", {class: "empty"}, "No Runway account is known yet: the relay lists them from ",
        h("code", {}, "GET accounts/"), " (or ", h("code", {}, "RELAY_ACCOUNTS"), ") when it starts scheduling."));
      return;
    }
    fill(this.root, data.accounts.map(a => this.card(a)));
  }

  card(a) {
    const id = slug(a.email);
    const facts = [
      ["Slots in use", `${a.slots_in_use} of ${a.capacity ?? "?"}` + (a.max_jobs && a.max_jobs !== a.capacity ? ` (maxJobs ${a.max_jobs})` : "")],
      ["Credits", credits(a.credits)],
      ["Jobs today", String(a.jobs_today)],
      ["Moderation", a.moderation.limit
        ? `${a.moderation.failures} of ${a.moderation.limit} within ${a.moderation.window}` + (a.paused ? ", since the pause" : "")
        : `${a.moderation.failures} (no guard)`],
    ];
    if (a.resting_until) facts.push(["Resting until", until(a.resting_until)]);
    if (a.last_error) {
      facts.push(["Last error", h("span", {class: "error-line"}, a.last_error, h("span", {class: "faint"}, timeAgo(a.last_error_at)))]);
    }
    const banners = [];
    if (a.paused) {
      banners.push(h("div", {class: "banner paused", role: "status", id: `paused-${id}`},
        h("strong", {}, "Paused until ", until(a.paused_until)),
        h("p", {class: "reason"}, a.paused_reason)));
    }
    if (!a.in_rotation) {
      banners.push(h("div", {class: "banner out", role: "status", id: `out-${id}`},
        h("strong", {}, "Out of rotation"), h("p", {class: "reason"}, a.out_of_rotation_reason),
        h("p", {class: "muted"}, "Fix the account at useapi.net, then resume it.")));
    }
    const actions = [];
    if (a.paused || !a.in_rotation) {
      const button = h("button", {type: "button", class: "btn primary", id: `resume-${id}`}, "Resume");
      button.addEventListener("click", () => this.resume(a.email, button));
      actions.push(button);
    }
    return h("article", {class: `card account`, id: `account-${id}`, "data-state": a.state},
      h("header", {}, h("h2", {}, a.email), statePill(a)),
      banners,
      h("dl", {}, facts.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
      actions.length ? h("div", {class: "actions"}, actions) : null);
  }

  async resume(email, button) {
    try {
      const answer = await busy(button, () =>
        api(`/api/accounts/${encodeURIComponent(email)}/resume`, {method: "POST"}));
      toast(answer.lifted.length ? `${email} resumed: ${answer.lifted.join("; ")}` : `${email} had nothing to lift.`);
    } catch (error) {
      toast(`Cannot resume ${email}: ${error.message}`, {error: true});
    }
    await this.load();
  }
}
