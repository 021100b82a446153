const jobs = new Map();
let models = [];
let selected = null;
const esc = s => String(s ?? "").replace(/[&<>"']/g, c => ({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;","'":"&#39;"}[c]));
function fillSelect(el, values) { el.innerHTML = values.map(v => `<option>${esc(v)}</option>`).join(""); }
function onModel() {
  const m = models.find(x => x.name === document.getElementById("model").value);
  if (!m) return;
  fillSelect(document.getElementById("duration"), m.durations && m.durations.length ? m.durations : [""]);
  const ratios = m.aspect_ratios_t2v && m.aspect_ratios_t2v.length ? m.aspect_ratios_t2v : (m.aspect_ratios_i2v || []);
  fillSelect(document.getElementById("aspect"), ratios.length ? ratios : [""]);
}
function render() {
  const rows = [...jobs.values()].sort((a, b) => b.id.localeCompare(a.id)).map(j => `
    <tr class="job" data-id="${esc(j.id)}"><td>${esc(j.id)}</td><td>${esc(j.model)}</td>
    <td class="${esc(j.status)}">${esc(j.status)}</td>
    <td><div class="bar"><div data-progress="${Math.round((j.progress || 0) * 100)}"></div></div></td>
    <td>${esc(j.created_at)}</td></tr>`);
  document.getElementById("jobs").innerHTML = rows.join("");
  // The page's CSP refuses inline style attributes; widths set through the DOM are allowed.
  for (const bar of document.querySelectorAll("#jobs [data-progress]")) bar.style.width = `${bar.dataset.progress}%`;
  if (selected && jobs.has(selected)) showDetail(jobs.get(selected));
}
let refetch = null;
function showDetail(j) {
  // Handler runs (the download) finish after the job's last transition: refresh until they settle.
  clearTimeout(refetch);
  if ((j.handlers || []).some(r => r.status === "pending" || r.status === "running") ||
      !["succeeded", "failed", "cancelled", "rejected"].includes(j.status)) {
    refetch = setTimeout(async () => { if (selected === j.id) showDetail(await api(`/api/jobs/${j.id}`)); }, 1000);
  }
  const files = (j.artifacts || []).filter(a => a.path).map(a => {
    const name = a.path.split("/").pop();
    return `<video controls src="/files/${encodeURIComponent(j.id)}/${encodeURIComponent(name)}"></video>
            <div class="sha">sha256 ${esc(a.sha256)}</div>`; }).join("");
  const runs = (j.handlers || []).map(r => `<tr><td>${esc(r.name)}</td><td>${esc(r.status)}</td>
    <td>${esc(r.attempts)}</td><td>${esc(r.last_error)}</td>
    <td><button data-replay="${esc(r.name)}">Replay</button></td></tr>`).join("");
  document.getElementById("detail").innerHTML = `<h3>Job ${esc(j.id)}</h3>
    <div class="${esc(j.status)}">${esc(j.status)} · attempt ${esc(j.attempt)}</div>
    ${j.error ? `<div class="error">${esc(j.error)}</div>` : ""}${files}
    <table><tr><th>handler</th><th>status</th><th>tries</th><th>last error</th><th></th></tr>${runs}</table>`;
}
async function api(path, options) {
  const r = await fetch(path, options);
  const body = await r.json();
  if (!r.ok) throw new Error(body.error + (body.field ? ` (${body.field})` : ""));
  return body;
}
document.getElementById("jobs").addEventListener("click", async e => {
  const tr = e.target.closest("tr.job"); if (!tr) return;
  selected = tr.dataset.id; showDetail(await api(`/api/jobs/${selected}`));
});
document.getElementById("detail").addEventListener("click", async e => {
  const name = e.target.dataset.replay; if (!name || !selected) return;
  await api(`/api/jobs/${selected}/replay?handler=${encodeURIComponent(name)}`, {method: "POST"});
  showDetail(await api(`/api/jobs/${selected}`));
});
document.getElementById("model").addEventListener("change", onModel);
document.getElementById("submit").addEventListener("submit", async e => {
  e.preventDefault();
  const body = {};
  for (const [k, v] of new FormData(e.target)) if (v !== "") body[k] = k === "duration" ? Number(v) : v;
  try {
    const job = await api("/api/jobs", {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
    document.getElementById("form-error").textContent = "";
    jobs.set(job.id, job); selected = job.id; render();
  } catch (err) { document.getElementById("form-error").textContent = err.message; }
});
(async () => {
  models = (await api("/api/models")).models;
  fillSelect(document.getElementById("model"), models.map(m => m.name)); onModel();
  for (const j of (await api("/api/jobs?limit=100")).jobs) jobs.set(j.id, j);
  render();
  // Slack and Discord messages link to /#job=<id>: open that job.
  const linked = new URLSearchParams(location.hash.slice(1)).get("job");
  if (linked) { selected = linked; showDetail(await api(`/api/jobs/${encodeURIComponent(linked)}`)); }
  const events = new EventSource("/api/events");
  events.addEventListener("job", e => { const j = JSON.parse(e.data); jobs.set(j.id, j); render(); });
})();
