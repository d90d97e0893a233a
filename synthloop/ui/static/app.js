// The pages' live parts: run curves (SSE from metrics.jsonl), farm job status (SSE), action logs
// (SSE) with cancel, and "try it" uploads. Plain DOM, no framework.
"use strict";

const runData = {};  // run path -> {series name -> [[step, value], ...]}
const runCharts = [];

function redrawRunCharts() {
  for (const c of runCharts) {
    const runs = JSON.parse(c.dataset.runs), want = c.dataset.series, series = [];
    for (const r of runs) {
      const d = runData[r] || {};
      for (const name of Object.keys(d).sort()) {
        const ok = want.endsWith("*") ? name.startsWith(want.slice(0, -1)) : name === want;
        if (ok) series.push({name: runs.length > 1 ? `${r} ${name}` : name, points: d[name]});
      }
    }
    drawChart(c, series, {title: c.dataset.title});
  }
  document.querySelectorAll(".npoints").forEach(el => {
    const d = runData[el.dataset.run] || {};
    el.textContent = (d.loss || []).length;
  });
}

function followRun(run) {
  runData[run] = {};
  let offset = 0;
  const open = () => {
    const es = new EventSource(`/api/metrics?p=${encodeURIComponent(run)}&offset=${offset}`);
    es.onmessage = ev => {
      const msg = JSON.parse(ev.data);
      offset = msg.offset;
      for (const [name, pts] of Object.entries(msg.points)) (runData[run][name] ||= []).push(...pts);
      redrawRunCharts();
    };
    es.onerror = () => { es.close(); setTimeout(open, 2000); };  // the server ends streams after a while
  };
  open();
}

function initRuns() {
  document.querySelectorAll("canvas.live-chart").forEach(c => runCharts.push(c));
  const runs = new Set(runCharts.flatMap(c => JSON.parse(c.dataset.runs)));
  redrawRunCharts();
  runs.forEach(followRun);
}

function fmtSeconds(s) {
  if (s === null || s === undefined) return "–";
  if (s < 90) return `${Math.round(s)} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

function initJob() {
  const el = document.getElementById("job");
  if (!el) return;
  const es = new EventSource(`/api/job?p=${encodeURIComponent(el.dataset.job)}`);
  es.onmessage = ev => {
    const s = JSON.parse(ev.data);
    if (s.error) { el.insertAdjacentHTML("afterbegin", `<div class="error"></div>`); el.firstChild.textContent = s.error; return; }
    document.getElementById("job-progress").value = s.done;
    document.getElementById("job-done").textContent = s.done;
    document.getElementById("job-rate").textContent = s.rate_fps ? `${s.rate_fps.toFixed(2)} frames/s` : "–";
    document.getElementById("job-eta").textContent = fmtSeconds(s.eta_s);
    document.getElementById("job-failed").textContent = s.failed.length;
    const body = document.querySelector("#shards tbody");
    body.replaceChildren(...s.shards.map(r => {
      const tr = document.createElement("tr");
      const cells = [r.index, r.state, r.done, r.planned, r.failed.join(", ") || "–", r.s_per_frame ? r.s_per_frame.toFixed(2) : "–"];
      cells.forEach((v, k) => { const td = document.createElement("td"); td.textContent = v; if (k === 1) td.className = `state ${v}`; tr.appendChild(td); });
      return tr;
    }));
  };
}

function initAction() {
  const log = document.getElementById("log");
  if (!log) return;
  const id = log.dataset.id, state = document.getElementById("action-state"), btn = document.getElementById("cancel");
  let offset = 0, finished = false;
  const open = () => {
    const es = new EventSource(`/api/action-log?id=${id}&offset=${offset}`);
    es.onmessage = ev => {
      const m = JSON.parse(ev.data);
      offset = m.offset;
      log.textContent += m.text;
      log.scrollTop = log.scrollHeight;
      state.textContent = m.state; state.className = `state ${m.state}`;
      if (m.state !== "running") { finished = true; btn.disabled = true; es.close(); }
    };
    es.onerror = () => { es.close(); if (!finished) setTimeout(open, 2000); };
  };
  open();
  btn.addEventListener("click", async () => {
    btn.disabled = true;
    await fetch(`/api/actions/cancel?id=${id}`, {method: "POST"});
  });
}

function initTry() {
  const el = document.getElementById("try");
  if (!el) return;
  const status = document.getElementById("try-status");
  document.getElementById("try-run").addEventListener("click", async () => {
    const file = document.getElementById("try-file").files[0];
    if (!file) { status.textContent = "choose an image first"; return; }
    status.textContent = "detecting…";
    const score = encodeURIComponent(document.getElementById("try-score").value);
    const r = await fetch(`/api/try?p=${encodeURIComponent(el.dataset.model)}&score=${score}`, {method: "POST", body: file});
    const m = await r.json();
    if (!r.ok) { status.textContent = m.error || r.statusText; return; }
    document.getElementById("try-result").src = m.image;
    document.getElementById("try-dets").textContent = m.detections.map(d => `${d.class} ${d.score.toFixed(2)} [${d.box.join(", ")}]`).join("\n");
    status.textContent = `${m.detections.length} detections`;
    el.dataset.count = m.detections.length;
  });
}

document.addEventListener("DOMContentLoaded", () => { initRuns(); initJob(); initAction(); initTry(); });
