// The console's shell: loads the model rules, routes the hash to a view, and feeds live updates to
// whichever views are listening. /#job=<id> is the deep link to a job (Slack and Discord use it).

import {Live, api, takeReturn} from "./api.js";
import {debounce, h, fill, refreshAges, toast} from "./dom.js";
import {CompareView, GroupView} from "./compare.js";
import {SubmitView} from "./form.js";
import {JobView} from "./job.js";
import {JobsView} from "./jobs.js";
import {UsageView} from "./usage.js";
import {AccountsView, troubled} from "./accounts.js";

const app = {
  models: [],
  rules: new Map(),
  accounts: [],
  label(model) {
    const rule = this.rules.get(model);
    return rule ? rule.label : model;
  },
  go(hash) {
    if (location.hash === hash) route();
    else location.hash = hash;
  },
};

const views = {};
let current = null;

function routeName(params) {
  if (params.has("job")) return "job";
  if (params.has("group")) return "group";
  for (const name of ["new", "compare", "usage", "accounts"]) if (params.has(name)) return name;
  return "jobs";
}

function route() {
  const params = new URLSearchParams(location.hash.slice(1));
  const name = routeName(params);
  for (const [key, view] of Object.entries(views)) {
    const section = document.getElementById(`view-${key}`);
    if (key !== name && !section.hidden) {
      section.hidden = true;
      view.hide?.();
    }
  }
  document.getElementById(`view-${name}`).hidden = false;
  const tab = {job: "jobs", group: "compare"}[name] || name;
  for (const link of document.querySelectorAll(".tabs a")) {
    if (link.dataset.view === tab) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (current !== name) window.scrollTo(0, 0);
  current = name;
  views[name].show(params);
}

async function refreshSlots() {
  try {
    const usage = await api("/api/usage?days=1");
    app.accounts = usage.accounts.map(a => a.email);
    views.jobs.setAccounts(app.accounts);
    const el = document.getElementById("slots");
    const parts = usage.accounts.filter(a => a.max_jobs).map(a => `${a.in_use}/${a.max_jobs}`);
    const used = usage.accounts.reduce((n, a) => n + a.in_use, 0);
    const cap = usage.accounts.reduce((n, a) => n + (a.max_jobs || 0), 0);
    el.hidden = !usage.accounts.length;
    el.textContent = cap ? `Slots ${used}/${cap}` : `${used} running`;
    el.title = usage.accounts.map(a => `${a.email}: ${a.in_use} of ${a.max_jobs ?? "?"} slots in use`).join("\n")
      || parts.join(", ");
  } catch (_) { /* the header is a nicety */ }
}

/** The header's warning when an account is paused, out of credits or out of rotation. */
app.onAccounts = data => {
  const el = document.getElementById("accounts-alert");
  const bad = data.accounts.filter(troubled);
  el.hidden = !bad.length;
  el.textContent = bad.length === 1 ? `${bad[0].email}: ${bad[0].state.replace(/-/g, " ")}` : `${bad.length} accounts need a look`;
  el.title = bad.map(a => `${a.email}: ${a.paused_reason || a.out_of_rotation_reason || a.state}`).join("\n");
};

async function refreshAccounts() {
  try {
    app.onAccounts(await api("/api/accounts"));
  } catch (_) { /* the header is a nicety */ }
}

async function boot() {
  document.getElementById("skip").addEventListener("click", event => {
    event.preventDefault();
    document.getElementById("main").focus();
  });
  try {
    app.models = (await api("/api/models")).models;
  } catch (error) {
    fill(document.getElementById("main"), h("p", {class: "form-error"}, `Cannot load the model rules: ${error.message}`));
    return;
  }
  for (const rule of app.models) app.rules.set(rule.name, rule);
  views.jobs = new JobsView(app);
  views.job = new JobView(app);
  views.new = new SubmitView(app);
  views.compare = new CompareView(app);
  views.group = new GroupView(app);
  views.usage = new UsageView(app);
  views.accounts = new AccountsView(app);

  const back = takeReturn();
  if (back && !location.hash) history.replaceState(null, "", back);
  window.addEventListener("hashchange", route);
  route();
  refreshSlots();
  refreshAccounts();

  const slotsLater = debounce(() => {
    refreshSlots();
    refreshAccounts();
  }, 1500);
  const live = new Live("/api/events", document.getElementById("live"), {
    onJob(job) {
      for (const view of Object.values(views)) view.onJob?.(job);
      slotsLater();
    },
    onReconnect() {
      toast("Live updates are back.");
      for (const view of Object.values(views)) view.resync?.();
      refreshSlots();
      refreshAccounts();
    },
  });
  live.connect();
  setInterval(() => refreshAges(), 15000);
  setInterval(refreshAccounts, 30000);  // a pause ends by the clock, not by an event
  document.addEventListener("keydown", event => {
    const typing = /^(INPUT|TEXTAREA|SELECT)$/.test(document.activeElement?.tagName || "");
    if (event.key === "/" && !typing && !event.ctrlKey && !event.metaKey) {
      event.preventDefault();
      if (document.getElementById("view-jobs").hidden) {
        history.pushState(null, "", "#jobs");
        route();
      }
      document.getElementById("q").focus();
    }
  });
}

boot();
