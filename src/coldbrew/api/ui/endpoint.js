// One endpoint: its settings, charts over time, its versions (traffic share, per-version errors
// and latency, rollback reasons), the advisor's arithmetic and recent jobs with their cold-start
// breakdown and logs.
import { api } from "./api.js";
import { COLORS, drawChart } from "./charts.js";
import { esc, ms, pct, usd, when } from "./format.js";
import { renderNotices } from "./overview.js";

const WINDOWS = { "15m": "15s", "1h": "1m", "6h": "5m", "24h": "15m" };
const ADVICE_EVERY_MS = 30000;
const state = { window: "1h", open: new Set(), logs: new Map(), advice: null };

function skeleton(root, name) {
  root.dataset.page = `endpoint:${name}`;
  state.open.clear();
  state.logs.clear();
  state.advice = null;
  const buttons = Object.keys(WINDOWS)
    .map((w) => `<button data-window="${w}" class="${w === state.window ? "on" : ""}">${w}</button>`)
    .join("");
  root.innerHTML = `
    <p><a href="#/">← Overview</a></p>
    <h1 id="endpoint-name">${esc(name)}</h1>
    <div id="meta" class="muted"></div>
    <section><h2>Over time <span class="windows">${buttons}</span></h2>
      <div id="summary" class="cards"></div>
      <div class="charts">
        <div id="chart-invocations" class="chart"></div><div id="chart-latency" class="chart"></div>
        <div id="chart-cold" class="chart"></div><div id="chart-workers" class="chart"></div>
        <div id="chart-cost" class="chart"></div>
      </div></section>
    <section><h2>Versions <span class="muted">(jobs, errors and latency over the window)</span></h2>
      <div id="versions">…</div></section>
    <section><h2>Serverless or dedicated? (last 7 days)</h2><div id="advice">…</div></section>
    <section><h2>Recent jobs</h2><div id="jobs">…</div></section>`;
  root.querySelectorAll("[data-window]").forEach((button) =>
    button.addEventListener("click", () => {
      state.window = button.dataset.window;
      root.querySelectorAll("[data-window]").forEach((b) => b.classList.toggle("on", b === button));
    }),
  );
  root.querySelector("#jobs").addEventListener("click", async (event) => {
    const button = event.target.closest("[data-logs]");
    if (!button) return;
    const id = button.dataset.logs;
    if (state.open.has(id)) state.open.delete(id);
    else {
      state.open.add(id);
      state.logs.set(id, (await api(`/v1/jobs/${encodeURIComponent(id)}/logs`)).logs);
    }
    document.getElementById(`detail-${id}`)?.classList.toggle("hidden", !state.open.has(id));
    fillDetail(id);
  });
}

function meta(e) {
  const s = e.spec;
  return `v${e.version} · ${esc(e.hardware)} · min_workers ${s.min_workers} · max_workers
    ${s.max_workers} · idle_timeout_s ${s.idle_timeout_s} · concurrency ${s.concurrency} ·
    workers now: <b data-field="workers">${e.workers.idle} idle, ${e.workers.running} running,
    ${e.workers.starting} starting</b> · queue <b data-field="queue">${e.queue}</b>`;
}

function summaryCards(ts) {
  const s = ts.summary;
  const cost = ts.costUsdPerHour;
  const sum = (xs) => xs.reduce((a, b) => a + b, 0);
  const [cold, busy, idle] = [sum(cost.cold_start), sum(cost.busy), sum(cost.idle)];
  const reserved = sum(cost.reserved || []);
  const card = (field, label, value, extra = "") =>
    `<div class="card" data-field="${field}"><h3>${label}</h3><div class="big">${value}</div>${extra}</div>`;
  return [
    card("invocations", "invocations", s.invocations,
      `<div class="muted">${Object.entries(s.byStatus).filter(([, n]) => n)
        .map(([k, n]) => `${k} ${n}`).join(", ")}</div>`),
    card("latency", "latency p50 / p99", `${ms(s.latencyP50Ms)} / ${ms(s.latencyP99Ms)}`),
    card("cold_starts", "waited for a cold start", s.coldStarts,
      `<div class="muted">${pct(s.coldStartRate)} of jobs; wait avg ${ms(s.coldStartWaitAvgMs)},
        max ${ms(s.coldStartWaitMaxMs)}</div>`),
    card("cost", "cost (whole hours in the window)", usd(cold + busy + idle + reserved),
      `<div class="muted">cold start ${usd(cold)} · busy ${usd(busy)} ·
        <span class="idle">idle keep-warm ${usd(idle)}</span> ·
        <span class="reserved">reserved ${usd(reserved)}</span></div>`),
  ].join("");
}

function charts(ts) {
  const span = [ts.t[0], ts.t[ts.t.length - 1] + ts.stepS];
  const statuses = ["COMPLETED", "FAILED", "TIMED_OUT", "CANCELLED"];
  drawChart("chart-invocations", "Invocations (per bucket, by final status)",
    [...statuses.map((s) => ({ label: s, color: COLORS[s] })), { label: "cache hits", color: COLORS.cache }],
    [ts.t, ...statuses.map((s) => ts.invocations[s]), ts.cacheHits], {}, span);
  drawChart("chart-latency", "Latency, accepted to finished (ms)",
    [{ label: "p50", color: COLORS.p50 }, { label: "p99", color: COLORS.p99 }],
    [ts.t, ts.latencyP50Ms, ts.latencyP99Ms], { y: "ms" }, span);
  drawChart("chart-cold", "Cold starts and their wait",
    [{ label: "cold starts", color: COLORS.cold },
     { label: "avg wait (ms)", color: COLORS.wait, scale: "ms" }],
    [ts.t, ts.coldStarts, ts.coldStartWaitAvgMs], { y: "jobs", ms: "ms" }, span);
  drawChart("chart-workers", "Workers (most seen per bucket)",
    ["idle", "running", "starting"].map((s) => ({ label: s, color: COLORS[s] })),
    [ts.t, ts.workers.idle, ts.workers.running, ts.workers.starting], {}, span);
  const c = ts.costUsdPerHour;
  drawChart("chart-cost", "Cost per hour (USD)",
    ["cold_start", "busy", "idle", "reserved"].map((k) => ({ label: k.replace("_", " "), color: COLORS[k], pointSize: 8 })),
    [c.t, c.cold_start, c.busy, c.idle, c.reserved], { y: "$" },
    [Math.min(c.t[0], span[0]), Math.max(c.t[c.t.length - 1] + 3600, span[1])]);
}

function adviceHtml(a) {
  const cost = a.costUsd;
  return `<p id="advice-verdict"><b>${esc(a.cheaper)}</b> is cheaper at this traffic:
      serverless ${usd(a.serverlessMonthlyUsd)}/month vs dedicated
      ${usd(a.dedicatedMonthlyUsd)}/month. ${a.requests} requests in the window${
        a.breakEvenRequestsPerHour !== undefined
          ? `; break-even at ${a.breakEvenRequestsPerHour} requests/hour` : ""}.</p>
    <p class="muted">recorded: cold start ${usd(cost.cold_start)} · busy ${usd(cost.busy)} ·
      <span class="idle">idle keep-warm ${usd(cost.idle)}</span> ·
      <span class="reserved">reserved ${usd(cost.reserved || 0)}</span> · total ${usd(cost.total)}</p>
    <pre id="advice-arithmetic">${a.arithmetic.map(esc).join("\n")}</pre>${reservedHtml(a.reserved)}
    <ul>${a.suggestions.map((s) => `<li><code>${esc(s.setting)}</code>: ${esc(s.effect)}</li>`).join("")}</ul>`;
}

// The hybrid pattern: how many workers to reserve for this traffic, with the cost curve.
function reservedHtml(r) {
  if (!r) return "";
  return `<p id="advice-reserved">reserve <b>${r.count}</b> worker(s) (now ${r.current}):
      ${usd(r.monthlyUsd)}/month vs ${usd(r.serverlessMonthlyUsd)}/month with none reserved.</p>
    <pre id="advice-reserved-arithmetic">${r.arithmetic.map(esc).join("\n")}</pre>`;
}

// coldStartDetail keys, in the words of the breakdown; unknown keys are shown as they come.
const STAGES = {
  forked: "forked from a template", processStartMs: "process start", importMs: "imports",
  forkMs: "fork", setupMs: "setup()", firstPredictMs: "first predict", totalMs: "total",
  queueWaitMs: "queue wait",
};

function detailHtml(job) {
  const stage = ([k, v]) =>
    `${esc(STAGES[k] || k)} <b>${typeof v === "number" ? ms(v) : v === true ? "yes" : v === false ? "no" : esc(v)}</b>`;
  const cold = job.coldStartDetail
    ? `<div class="cold-detail"><b>cold start</b> ${Object.entries(job.coldStartDetail)
        .map(stage).join(" · ")}</div>`
    : `<div class="muted">warm: no cold start</div>`;
  const error = job.error ? `<div class="error">${esc(job.error)}</div>` : "";
  return `${cold}${error}<pre class="logs" data-logs-for="${esc(job.id)}">…</pre>`;
}

function fillDetail(id) {
  const pre = document.querySelector(`[data-logs-for="${CSS.escape(id)}"]`);
  const logs = state.logs.get(id);
  if (!pre || !logs) return;
  pre.textContent = logs.length
    ? logs.map((l) => `${when(new Date(l.ts * 1000).toISOString())} ${l.stream} ${l.line}`).join("\n")
    : "(the worker printed nothing for this job)";
}

function versionsTable(report) {
  const rows = report.versions
    .map((v) => {
      const s = v.stats;
      const errors = s.byStatus.FAILED + s.byStatus.TIMED_OUT;
      return `<tr data-version="${v.version}" class="version-${esc(v.status)}">
        <td>v${v.version}</td><td>${when(v.createdAt)}</td><td><code>${esc(v.artifact.slice(0, 12))}</code></td>
        <td>${esc(v.environment)}</td><td data-field="status">${esc(v.status)}</td>
        <td data-field="share">${v.share}%</td>
        <td>${v.workers.idle} idle, ${v.workers.running} running, ${v.workers.starting} starting</td>
        <td data-field="invocations">${s.invocations}</td><td data-field="errors">${errors}</td>
        <td>${ms(s.latencyP50Ms)} / ${ms(s.latencyP99Ms)}</td>
        <td class="muted">${v.rollbackReason ? esc(v.rollbackReason) : ""}</td></tr>`;
    })
    .join("");
  const r = report.rule;
  const rule = r
    ? `<p class="muted">canary rule: back to 0% on ${[
        r.maxErrorRate !== null ? `error rate &gt; ${r.maxErrorRate}` : "",
        r.maxP99Ms !== null ? `p99 &gt; ${r.maxP99Ms} ms` : "",
      ].filter(Boolean).join(" or ")} over ${r.windowS} s (after ${r.minJobs} jobs)</p>`
    : "";
  return `<table id="versions-table"><thead><tr><th>version</th><th>created (UTC)</th>
    <th>artifact</th><th>environment</th><th>status</th><th>share</th><th>workers</th>
    <th>jobs</th><th>errors</th><th>p50 / p99</th><th>rollback reason</th></tr></thead>
    <tbody>${rows}</tbody></table>${rule}`;
}

function jobsTable(jobs) {
  if (!jobs.length) return `<p class="muted">No jobs yet.</p>`;
  const rows = jobs
    .map((j) => `<tr data-job="${esc(j.id)}" class="status-${esc(j.status)}">
        <td><code>${esc(j.id.slice(0, 12))}</code></td><td data-field="status">${esc(j.status)}</td>
        <td>${when(j.createdAt)}</td><td>${ms(j.delayTime)}</td><td>${ms(j.executionTime)}</td>
        <td data-field="cold">${j.coldStart ? `yes, ${ms(j.coldStartDetail?.totalMs)}` : "no"}${j.cached ? " (cached)" : ""}</td>
        <td>${usd(j.costUsd)}</td>
        <td><button data-logs="${esc(j.id)}">${state.open.has(j.id) ? "hide" : "details & logs"}</button></td></tr>
      <tr id="detail-${esc(j.id)}" class="detail ${state.open.has(j.id) ? "" : "hidden"}">
        <td colspan="8">${detailHtml(j)}</td></tr>`)
    .join("");
  return `<table id="jobs-table"><thead><tr><th>job</th><th>status</th><th>created (UTC)</th>
    <th>queued</th><th>execution</th><th>cold start</th><th>cost</th><th></th></tr></thead>
    <tbody>${rows}</tbody></table>`;
}

export async function renderEndpoint(root, name, alive) {
  if (root.dataset.page !== `endpoint:${name}` || !document.getElementById("endpoint-name")) {
    skeleton(root, name);
  }
  const path = `/v1/endpoints/${encodeURIComponent(name)}`;
  const fetchAdvice = !state.advice || Date.now() - state.advice.at > ADVICE_EVERY_MS;
  const [endpoint, ts, versions, jobs, budgets, advice] = await Promise.all([
    api(path),
    api(`${path}/timeseries?window=${state.window}&step=${WINDOWS[state.window]}`),
    api(`${path}/versions?window=${state.window}`),
    api(`${path}/jobs?limit=20`),
    api("/v1/budgets"),
    fetchAdvice ? api(`${path}/advice?window=7d`) : Promise.resolve(null),
  ]);
  if (!alive()) return;
  if (advice) state.advice = { at: Date.now(), body: advice };
  renderNotices(budgets);
  document.getElementById("meta").innerHTML = meta(endpoint);
  document.getElementById("summary").innerHTML = summaryCards(ts);
  charts(ts);
  document.getElementById("versions").innerHTML = versionsTable(versions);
  document.getElementById("advice").innerHTML = adviceHtml(state.advice.body);
  document.getElementById("jobs").innerHTML = jobsTable(jobs.jobs);
  state.open.forEach(fillDetail);
}
