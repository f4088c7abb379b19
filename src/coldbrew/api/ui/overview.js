// The overview: cost by period and endpoint (cold start / busy / idle keep-warm), live endpoint
// state, invocations and latency of the last 24 h, the advisor's verdict, budgets and alerts.
import { api, periods } from "./api.js";
import { esc, ms, pct, usd, when } from "./format.js";

const ADVICE_EVERY_MS = 30000;
const advice = new Map(); // endpoint -> {at, body}

async function adviceFor(names) {
  const now = Date.now();
  await Promise.all(
    names.map(async (name) => {
      const seen = advice.get(name);
      if (seen && now - seen.at < ADVICE_EVERY_MS) return;
      try {
        const body = await api(`/v1/endpoints/${encodeURIComponent(name)}/advice?window=7d`);
        advice.set(name, { at: now, body });
      } catch (error) {
        advice.set(name, { at: now, body: null, error: error.message });
      }
    }),
  );
}

function split(line) {
  return `<span class="kind cold">cold start ${usd(line.coldStartUsd)}</span>
    <span class="kind busy">busy ${usd(line.busyUsd)}</span>
    <span class="kind idle">idle keep-warm ${usd(line.idleUsd)}</span>
    <span class="kind reserved">reserved ${usd(line.reservedUsd || 0)}</span>`;
}

function periodCard(period, report) {
  const t = report.total;
  const idleShare = t.totalUsd > 0 ? t.idleUsd / t.totalUsd : null;
  return `<div class="card" data-period="${period.id}" data-since="${esc(period.since)}">
    <h3>${esc(period.label)}</h3>
    <div class="big" data-field="totalUsd">${usd(t.totalUsd)}</div>
    <div class="split">
      <div>cold start <b data-field="coldStartUsd">${usd(t.coldStartUsd)}</b>
        <span class="muted">${t.coldStartS.toFixed(1)} s</span></div>
      <div>busy <b data-field="busyUsd">${usd(t.busyUsd)}</b>
        <span class="muted">${t.busyS.toFixed(1)} s</span></div>
      <div class="idle">idle keep-warm <b data-field="idleUsd">${usd(t.idleUsd)}</b>
        <span class="muted">${t.idleS.toFixed(1)} s${
          idleShare === null ? "" : `, ${pct(idleShare)} of the bill`
        }</span></div>
      <div class="reserved">reserved <b data-field="reservedUsd">${usd(t.reservedUsd || 0)}</b>
        <span class="muted">${(t.reservedS || 0).toFixed(1)} s</span></div>
    </div></div>`;
}

function biggestPart(line) {
  const parts = [
    ["busy (running jobs)", line.busyUsd],
    ["idle keep-warm (workers waiting for jobs: idle_timeout_s, min_workers)", line.idleUsd],
    ["cold starts (starting workers)", line.coldStartUsd],
    ["reserved workers (reserved_workers, busy or idle)", line.reservedUsd || 0],
  ].sort((a, b) => b[1] - a[1]);
  return parts[0];
}

function weekTable(account, report) {
  const rows = [...report.rows].sort((a, b) => b.totalUsd - a.totalUsd);
  if (!rows.length) return `<p class="muted">No billed worker time this week yet.</p>`;
  const top = rows[0];
  const [part, amount] = biggestPart(top);
  const name = top.endpoint.slice(account.length + 1);
  const share = top.totalUsd > 0 ? amount / top.totalUsd : 0;
  const lines = rows
    .map((line) => {
      const ep = line.endpoint.slice(account.length + 1);
      const idleShare = line.totalUsd > 0 ? line.idleUsd / line.totalUsd : null;
      return `<tr data-endpoint="${esc(ep)}">
        <td><a href="#/endpoint/${encodeURIComponent(ep)}">${esc(ep)}</a></td>
        <td data-field="totalUsd"><b>${usd(line.totalUsd)}</b></td>
        <td data-field="coldStartUsd">${usd(line.coldStartUsd)}</td>
        <td data-field="busyUsd">${usd(line.busyUsd)}</td>
        <td data-field="idleUsd" class="idle">${usd(line.idleUsd)}</td>
        <td class="idle">${pct(idleShare)}</td>
        <td data-field="reservedUsd" class="reserved">${usd(line.reservedUsd || 0)}</td>
        <td class="muted">${line.coldStartS.toFixed(1)} / ${line.busyS.toFixed(1)} /
          ${line.idleS.toFixed(1)} / ${(line.reservedS || 0).toFixed(1)}</td></tr>`;
    })
    .join("");
  return `<p id="top-cost">Most this week: <b>${esc(name)}</b>, ${usd(top.totalUsd)}; the
      largest part is ${esc(part)}: ${usd(amount)} (${pct(share)}).</p>
    <table id="week-cost"><thead><tr><th>endpoint</th><th>total</th><th>cold start</th>
      <th>busy</th><th>idle keep-warm</th><th>idle share</th><th>reserved</th>
      <th>seconds cold/busy/idle/reserved</th>
    </tr></thead><tbody>${lines}</tbody></table>`;
}

function verdict(name) {
  const seen = advice.get(name);
  if (!seen) return `<span class="muted">…</span>`;
  if (!seen.body) return `<span class="muted">${esc(seen.error)}</span>`;
  const a = seen.body;
  return `<span class="${a.cheaper === "dedicated" ? "warn" : ""}">${esc(a.cheaper)} is cheaper</span>
    <span class="muted">(${usd(a.serverlessMonthlyUsd)} vs ${usd(a.dedicatedMonthlyUsd)}
    /month)</span>${
      a.reserved && a.reserved.count ? ` <span>reserve ${a.reserved.count}</span>` : ""}`;
}

function endpointsTable(endpoints, stats) {
  if (!endpoints.length) {
    return `<p class="muted">No endpoints yet: deploy one with <code>coldbrew deploy DIR</code>.</p>`;
  }
  const byName = new Map(stats.endpoints.map((s) => [s.endpoint, s]));
  const rows = endpoints
    .map((e) => {
      const s = byName.get(e.name) || {};
      const failed = (s.byStatus?.FAILED || 0) + (s.byStatus?.TIMED_OUT || 0);
      return `<tr data-endpoint="${esc(e.name)}">
        <td><a href="#/endpoint/${encodeURIComponent(e.name)}">${esc(e.name)}</a></td>
        <td>v${e.version}</td><td>${esc(e.hardware)}</td>
        <td data-field="workers">${e.workers.idle} / ${e.workers.running} / ${e.workers.starting}</td>
        <td data-field="queue">${e.queue}</td>
        <td data-field="invocations">${s.invocations ?? 0}</td>
        <td data-field="failed" class="${failed ? "warn" : ""}">${failed}</td>
        <td data-field="latency">${ms(s.latencyP50Ms)} / ${ms(s.latencyP99Ms)}</td>
        <td data-field="cold_starts">${s.coldStarts ?? 0}</td>
        <td data-field="cold_rate">${pct(s.coldStartRate)}</td>
        <td data-field="cold_wait">${ms(s.coldStartWaitAvgMs)} / ${ms(s.coldStartWaitMaxMs)}</td>
        <td data-field="advice">${verdict(e.name)}</td></tr>`;
    })
    .join("");
  return `<table id="endpoints"><thead><tr><th>endpoint</th><th>version</th><th>hardware</th>
    <th>workers idle / running / starting</th><th>queue</th><th>invocations</th><th>failed</th>
    <th>latency p50 / p99</th><th>cold starts</th><th>cold-start rate</th>
    <th>cold-start wait avg / max</th><th>dedicated vs serverless (7 d)</th></tr></thead>
    <tbody>${rows}</tbody></table>`;
}

function budgetsTable(budgets) {
  if (!budgets.budgets.length) {
    return `<p class="muted">No budgets. Set one with
      <code>coldbrew budgets set --account NAME --monthly-usd N</code>.</p>`;
  }
  const rows = budgets.budgets
    .map(
      (b) => `<tr class="${b.stopped ? "stopped" : ""}">
        <td>${b.endpoint ? `endpoint ${esc(b.endpoint)}` : `account ${esc(b.account)}`}</td>
        <td>${esc(b.period)}</td><td>${usd(b.monthlyUsd)}</td>
        <td data-field="spent">${usd(b.spentUsd)}</td><td>${b.usedPct.toFixed(2)}%</td>
        <td>${usd(b.forecastUsd)}</td><td>${b.alertsPct.join(", ")}%</td>
        <td>${b.hardStop ? (b.stopped ? "<b>stopped: new jobs refused</b>" : "hard stop") : "alerts only"}</td>
      </tr>`,
    )
    .join("");
  return `<table id="budgets"><thead><tr><th>budget</th><th>period</th><th>limit</th>
    <th>spent</th><th>used</th><th>forecast</th><th>alerts at</th><th>at the limit</th></tr>
    </thead><tbody>${rows}</tbody></table>`;
}

export function renderNotices(budgets) {
  const box = document.getElementById("notices");
  const stopped = budgets.budgets.filter((b) => b.stopped);
  const alerts = budgets.alerts.slice(-5).reverse();
  box.innerHTML = [
    ...stopped.map(
      (b) => `<div class="notice stop">Budget used up: ${
        b.endpoint ? `endpoint ${esc(b.endpoint)}` : `account ${esc(b.account)}`
      } spent ${usd(b.spentUsd)} of ${usd(b.monthlyUsd)}; new jobs are refused (HTTP 402).</div>`,
    ),
    ...alerts.map(
      (a) => `<div class="notice">Budget alert: ${
        a.endpoint ? `endpoint ${esc(a.endpoint)}` : "the account"
      } reached ${a.thresholdPct}% of its monthly budget in ${esc(a.period)}
        (at ${when(new Date(a.at * 1000).toISOString())} UTC).</div>`,
    ),
  ].join("");
}

export async function renderOverview(root, alive) {
  const ps = periods();
  const [endpoints, stats, budgets, ...usage] = await Promise.all([
    api("/v1/endpoints"),
    api("/v1/stats?window=24h"),
    api("/v1/budgets"),
    ...ps.map((p) => api(`/v1/usage?by=endpoint&since=${p.since}`)),
  ]);
  await adviceFor(endpoints.endpoints.map((e) => e.name));
  if (!alive()) return;
  const account = document.getElementById("account").textContent;
  renderNotices(budgets);
  root.innerHTML = `
    <h1>Overview</h1>
    <section><h2>Cost</h2>
      <p class="muted">Every second a worker holds its hardware is billed: starting (cold start),
        running jobs (busy), or waiting for the next job (idle keep-warm, from
        <code>idle_timeout_s</code> and <code>min_workers</code>).</p>
      <div class="cards">${ps.map((p, i) => periodCard(p, usage[i])).join("")}</div>
      <h3>By endpoint, this week</h3>${weekTable(account, usage[1])}</section>
    <section><h2>Endpoints</h2>
      <p class="muted">Jobs that finished in the last 24 h (jobs are kept
        ${Math.round(stats.jobTtlS / 3600)} h). Latency is accepted to finished; a cold-start
        wait is how long a job queued for a new worker.</p>
      ${endpointsTable(endpoints.endpoints, stats)}</section>
    <section><h2>Budgets</h2>${budgetsTable(budgets)}</section>`;
}
