// poolgate live status page: polls api/live every second and redraws. No framework, no network
// access beyond the admin listener that served this file; every text goes in through textContent.
"use strict";

(function () {
  const POLL_MS = 1000;
  const HIDDEN_POLL_MS = 5000;
  const WINDOW_S = 300;
  const SVG_NS = "http://www.w3.org/2000/svg";
  const load = { inFlight: [], waiting: [], running: [] }; // sampled by the page, one per poll

  // -- small helpers -----------------------------------------------------------------------------

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function svgEl(tag, attrs) {
    const e = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    return e;
  }

  function fmtNum(x, digits) {
    if (x === null || x === undefined || Number.isNaN(x)) return "–";
    return Number(x).toFixed(digits === undefined ? 0 : digits);
  }

  function fmtRate(x) {
    if (x === null || x === undefined) return "–";
    if (x === 0) return "0";
    return x < 10 ? x.toFixed(2) : x.toFixed(1);
  }

  function fmtSeconds(s) {
    if (s === null || s === undefined) return "–";
    if (s < 1) return Math.round(s * 1000) + " ms";
    return s.toFixed(s < 10 ? 2 : 1) + " s";
  }

  function fmtAge(s) {
    if (s < 1) return "now";
    if (s < 60) return Math.round(s) + "s ago";
    return Math.floor(s / 60) + "m" + String(Math.round(s % 60)).padStart(2, "0") + "s ago";
  }

  function fmtPct(x) {
    return x === null || x === undefined ? "–" : Math.round(x * 100) + "%";
  }

  // -- header ------------------------------------------------------------------------------------

  function renderHeader(doc) {
    const readiness = document.getElementById("readiness");
    readiness.className = "chip " + (doc.ready ? "ready" : "not-ready");
    readiness.textContent = doc.ready ? "ready" : "not ready: " + doc.not_ready;

    const s10 = doc.summary.last_10s;
    const s60 = doc.summary.last_60s;
    let total = 0;
    let ok = 0;
    for (const pool of doc.pools) {
      for (const ep of pool.endpoints) {
        total += 1;
        if (ep.state === "ok") ok += 1;
      }
    }
    const errPct = s60.requests ? (s60.error_rate * s60.seconds) / s60.requests : 0;
    const kpis = [
      ["requests/s (10 s)", fmtRate(s10.rate), false],
      ["5xx/s (10 s)", fmtRate(s10.error_rate), s10.error_rate > 0],
      ["5xx (60 s)", s60.requests ? fmtPct(errPct) : "–", errPct > 0],
      ["TTFT p50 / p95 (60 s)", fmtSeconds(s60.ttft_p50) + " / " + fmtSeconds(s60.ttft_p95), false],
      ["in flight", fmtNum(doc.active_requests), false],
      ["endpoints ok", ok + " / " + total, ok < total],
    ];
    const dl = document.getElementById("kpis");
    dl.replaceChildren();
    for (const [label, value, bad] of kpis) {
      const d = el("div");
      d.append(el("dt", null, label), el("dd", bad ? "bad" : null, value));
      dl.append(d);
    }
  }

  // -- charts ------------------------------------------------------------------------------------

  // A round grid step giving at most 4 lines up to `v` (1, 2, 2.5 or 5 times a power of ten).
  function niceStep(v) {
    const raw = v > 0 ? v / 4 : 0.25;
    const p = Math.pow(10, Math.floor(Math.log10(raw)));
    for (const m of [1, 2, 2.5, 5]) if (m * p >= raw) return m * p;
    return 10 * p;
  }

  // series: [{cls, values (numbers or null), area}], n points oldest first, one per `step` s.
  function drawChart(svg, series, opts) {
    const W = Math.max(200, svg.clientWidth || 400);
    const H = 150;
    const L = 44, R = 8, T = 8, B = 20;
    svg.setAttribute("viewBox", "0 0 " + W + " " + H);
    svg.replaceChildren();
    let max = 0;
    let n = 0;
    for (const s of series) {
      n = Math.max(n, s.values.length);
      for (const v of s.values) if (v !== null && v > max) max = v;
    }
    if (opts.slots) n = Math.max(n, opts.slots);
    const step = niceStep(max);
    const lines = Math.max(1, Math.ceil(max / step - 1e-9));
    const ymax = step * lines;
    const x = (i) => L + (n <= 1 ? 0 : (i * (W - L - R)) / (n - 1));
    const y = (v) => T + (H - T - B) * (1 - v / ymax);
    for (let k = 0; k <= lines; k++) {
      const v = step * k;
      svg.append(svgEl("line", { class: "grid", x1: L, x2: W - R, y1: y(v), y2: y(v) }));
      const t = svgEl("text", { class: "axis", x: L - 6, y: y(v) + 3, "text-anchor": "end" });
      t.textContent = opts.fmt(v);
      svg.append(t);
    }
    const span = n * opts.step;
    const tickEvery = span > 180 ? 60 : span > 60 ? 30 : 10;
    for (let ago = 0; ago <= span; ago += tickEvery) {
      const i = n - 1 - ago / opts.step;
      if (i < 0) break;
      const t = svgEl("text", { class: "axis", x: x(i), y: H - 5, "text-anchor": ago === 0 ? "end" : "middle" });
      t.textContent = ago === 0 ? "now" : "-" + (ago >= 60 ? ago / 60 + "m" : ago + "s");
      svg.append(t);
    }
    let drawn = false;
    for (const s of series) {
      // Split at gaps (null) so a line never bridges seconds without data.
      let seg = [];
      const segments = [];
      const offset = n - s.values.length;  // a shorter series ends at "now"
      s.values.forEach((v, j) => {
        const i = j + offset;
        if (v === null || v === undefined) {
          if (seg.length) segments.push(seg);
          seg = [];
        } else {
          seg.push([x(i), y(v)]);
        }
      });
      if (seg.length) segments.push(seg);
      for (const pts of segments) {
        drawn = true;
        const d = pts.map((p) => p[0].toFixed(1) + "," + p[1].toFixed(1)).join(" ");
        if (s.area && pts.length > 1) {
          const base = y(0).toFixed(1);
          svg.append(svgEl("polygon", {
            class: "area",
            points: pts[0][0].toFixed(1) + "," + base + " " + d + " " + pts[pts.length - 1][0].toFixed(1) + "," + base,
          }));
        }
        if (pts.length === 1) {
          svg.append(svgEl("circle", { class: "line " + s.cls, cx: pts[0][0], cy: pts[0][1], r: 1.8 }));
        } else {
          svg.append(svgEl("polyline", { class: "line " + s.cls, points: d }));
        }
      }
    }
    if (!drawn) {
      const t = svgEl("text", { class: "empty", x: (L + W - R) / 2, y: H / 2, "text-anchor": "middle" });
      t.textContent = opts.empty;
      svg.append(t);
    }
  }

  // How many of the last seconds to draw: from the first second with data (at least a minute),
  // so a page opened on a gateway that just started is not a flat line with a blip at "now".
  function visibleSpan(arrays, min) {
    const n = Math.max(...arrays.map((a) => a.length));
    let first = n;
    for (const a of arrays) {
      const off = n - a.length;
      const i = a.findIndex((v) => v !== null && v !== undefined && v !== 0);
      if (i >= 0) first = Math.min(first, off + i);
    }
    return Math.min(n, Math.max(min, n - first));
  }

  function renderCharts(doc) {
    const t = doc.traffic;
    const span = visibleSpan([t.requests, t.errors, t.throttled, t.ttft_p50], 60);
    const tail = (a) => a.slice(-Math.min(span, WINDOW_S));
    drawChart(document.querySelector("#chart-rate svg"), [
      { cls: "s-req", values: tail(t.requests), area: true },
      { cls: "s-429", values: tail(t.throttled) },
      { cls: "s-err", values: tail(t.errors) },
    ], { step: 1, fmt: (v) => fmtNum(v, v % 1 ? 1 : 0), empty: "no requests yet" });
    drawChart(document.querySelector("#chart-ttft svg"), [
      { cls: "s-p95", values: tail(t.ttft_p95) },
      { cls: "s-p50", values: tail(t.ttft_p50), area: true },
    ], { step: 1, fmt: (v) => (v >= 1 ? v.toFixed(1) + "s" : Math.round(v * 1000) + "ms"), empty: "no streamed request yet" });

    let inFlight = 0, waiting = 0, running = 0;
    for (const pool of doc.pools) {
      for (const ep of pool.endpoints) {
        inFlight += ep.in_flight;
        waiting += ep.waiting || 0;
        running += ep.running || 0;
      }
    }
    for (const [k, v] of [["inFlight", inFlight], ["waiting", waiting], ["running", running]]) {
      load[k].push(v);
      if (load[k].length > WINDOW_S) load[k].shift();
    }
    drawChart(document.querySelector("#chart-load svg"), [
      { cls: "s-inflight", values: load.inFlight, area: true },
      { cls: "s-running", values: load.running },
      { cls: "s-waiting", values: load.waiting },
    ], { step: POLL_MS / 1000, slots: Math.max(60, load.inFlight.length), fmt: (v) => fmtNum(v, v % 1 ? 1 : 0), empty: "" });
  }

  // -- pools -------------------------------------------------------------------------------------

  function kvCell(kv) {
    const td = el("td", "num");
    if (kv === null || kv === undefined) {
      td.textContent = "–";
      return td;
    }
    const wrap = el("span", "kv");
    const track = el("span", "track");
    const fill = el("span", "fill" + (kv >= 0.9 ? " hot" : kv >= 0.7 ? " warm" : ""));
    fill.style.width = Math.min(100, Math.round(kv * 100)) + "%";
    track.append(fill);
    wrap.append(track, el("span", null, fmtPct(kv)));
    td.append(wrap);
    return td;
  }

  function adaptersCell(ep) {
    const td = el("td");
    for (const name of ep.lora_running) td.append(el("span", "tag", name));
    for (const name of ep.lora_waiting) td.append(el("span", "tag waiting", name + " (waiting)"));
    if (ep.max_lora !== null && ep.max_lora !== undefined) {
      td.append(el("span", "muted", ep.lora_running.length + "/" + ep.max_lora));
    } else if (!ep.lora_running.length && !ep.lora_waiting.length) {
      td.append(el("span", "muted", "–"));
    }
    return td;
  }

  function noteCell(note) {
    const td = el("td", "err");
    if (note) {
      td.append(el("span", null, note));
      td.title = note;
    }
    return td;
  }

  function endpointsTable(pool) {
    const table = el("table", "endpoints");
    const head = el("tr");
    const cols = [
      ["state"], ["endpoint"], ["placement", null, "region / cluster"],
      ["queued", "num", "requests waiting on the server (scraped)"],
      ["running", "num", "requests running on the server (scraped)"],
      ["KV cache", "num", "KV-cache utilisation (scraped)"],
      ["in flight", "num", "this gateway's requests to the endpoint"],
      ["awaiting 1st token", "num", "streamed requests without their first token yet"],
      ["adapters", null, "LoRA adapters running (and waiting), then running/slots"],
      ["req/s", "num", "requests served per second over the last minute"], ["note"]];
    for (const [name, cls, title] of cols) {
      const th = el("th", cls, name);
      if (title) th.title = title;
      head.append(th);
    }
    const thead = el("thead");
    thead.append(head);
    const tbody = el("tbody");
    for (const ep of pool.endpoints) {
      const tr = el("tr");
      tr.dataset.endpoint = ep.address;
      tr.dataset.state = ep.state;
      const state = el("td");
      state.append(el("span", "state " + ep.state, ep.state));
      const placement = [ep.region, ep.cluster].filter(Boolean).join(" / ") || "–";
      const note = ep.last_error || (ep.metrics_age !== null && !ep.metrics_fresh
        ? "metrics " + Math.round(ep.metrics_age) + " s old" : "");
      tr.append(
        state,
        el("td", "addr", ep.address),
        el("td", placement === "–" ? "placement muted" : "placement", placement),
        el("td", "num", fmtNum(ep.waiting)),
        el("td", "num", fmtNum(ep.running)),
        kvCell(ep.kv_usage),
        el("td", "num", ep.in_flight),
        el("td", "num", ep.awaiting_first_token),
        adaptersCell(ep),
        el("td", "num", fmtRate(ep.rate)),
        noteCell(note),
      );
      tbody.append(tr);
    }
    table.append(thead, tbody);
    return table;
  }

  function regionsBlock(pool) {
    const box = el("div", "regions");
    box.append(el("h3", null, "Share of requests by region (last 60 s)"));
    const bar = el("div", "share");
    const legend = el("div", "share-legend");
    pool.regions.forEach((r, i) => {
      const cls = "r" + (i % 6);
      if (r.share) {
        const part = el("div", cls, r.share >= 0.08 ? r.region + " " + fmtPct(r.share) : "");
        part.style.flexGrow = String(r.share);
        part.style.flexBasis = "0";
        part.title = r.region + ": " + fmtPct(r.share);
        bar.append(part);
      }
      const item = el("span");
      item.append(el("span", "swatch " + cls), el("b", null, r.region), document.createTextNode(
        " " + (r.share === null ? "no traffic" : fmtPct(r.share)) + " · " + r.available + "/" +
        r.endpoints + " ok · " + r.in_flight + " in flight" +
        (r.clusters.length ? " · " + r.clusters.join(", ") : "")));
      legend.append(item);
    });
    if (!bar.childElementCount) bar.append(el("div", "muted", ""));
    box.append(bar, legend);
    return box;
  }

  function picksTable(pool) {
    const box = el("div");
    box.append(el("h3", null, "Recent picks (" + pool.picks_total + " since start)"));
    const table = el("table", "picks");
    const head = el("tr");
    for (const [name, cls] of [["when"], ["model"], ["endpoint"], ["decided by"], ["margin", "num"], ["runner-up"]]) {
      head.append(el("th", cls, name));
    }
    const thead = el("thead");
    thead.append(head);
    const tbody = el("tbody");
    for (const p of pool.picks) {
      const tr = el("tr");
      const why = el("td");
      why.append(el("span", "why", p.decided_by));
      if (p.reason !== "highest weighted score") why.append(el("span", "muted", " " + p.reason));
      const parts = Object.entries(p.contributions);
      if (parts.length) {
        const contrib = el("div", "contrib");
        parts.forEach(([k, v], i) => {
          if (i) contrib.append(document.createTextNode(" · "));
          contrib.append(el("span", null, k.replace(/-scorer$/, "") + " " + v.toFixed(2)));
        });
        why.append(contrib);
      }
      why.title = p.reason + "; " + p.candidates + " of " + p.offered + " endpoints after filters";
      const model = el("td", "model");
      model.append(document.createTextNode(p.model));
      if (p.lora) model.append(el("span", "tag", "LoRA"));
      tr.append(
        el("td", "muted nowrap", fmtAge(p.age)),
        model,
        el("td", "addr", p.endpoint),
        why,
        el("td", "num", p.margin ? "+" + p.margin.toFixed(2) : "–"),
        el("td", "addr muted", p.runner_up || "–"),
      );
      tbody.append(tr);
    }
    if (!pool.picks.length) {
      const tr = el("tr", "empty-row");
      const td = el("td", null, "no pick yet: send a request through the gateway");
      td.colSpan = 6;
      tr.append(td);
      tbody.append(tr);
    }
    table.append(thead, tbody);
    box.append(table);
    return box;
  }

  function breakerRow(b) {
    const br = b.breaker;
    const row = el("div", "breaker");
    row.append(el("span", "chip " + br.state, "breaker " + br.state));
    const overflows = Object.values(br.overflows).reduce((a, v) => a + v, 0);
    row.append(el("span", null,
      "active " + br.active + "/" + br.max_parallel_requests +
      " · pending " + br.pending + "/" + br.max_pending_requests +
      " · connections " + br.connections + "/" + br.max_connections +
      " · retries " + br.retries + "/" + br.max_parallel_retries +
      " · overflows " + overflows + (br.last_overflow ? " (last: " + br.last_overflow + ")" : "")));
    if (b.ejected && b.ejected.length) row.append(el("span", "chip open", "ejected: " + b.ejected.join(", ")));
    row.append(el("span", "key", b.key));
    return row;
  }

  function renderPools(doc) {
    const root = document.getElementById("pools");
    const cards = [];
    for (const pool of doc.pools) {
      const card = el("section", "card pool");
      card.dataset.pool = pool.key;
      const head = el("div", "pool-head");
      const ok = pool.endpoints.filter((e) => e.state === "ok").length;
      head.append(el("h2", null, "InferencePool " + pool.key),
        el("span", "chip", "profile " + pool.profile),
        el("span", "meta", ok + " of " + pool.endpoints.length + " endpoints ok"));
      card.append(head);
      if (pool.regions.length) card.append(regionsBlock(pool));
      const scroll = el("div", "scroll");
      scroll.append(endpointsTable(pool));
      card.append(scroll);
      const grid = el("div", "pool-grid");
      const right = el("div");
      right.append(el("h3", null, "Circuit breakers (per backendRef)"));
      const list = el("div", "breakers");
      for (const b of pool.backends) list.append(breakerRow(b));
      if (!pool.backends.length) list.append(el("span", "muted", "no route sends to this pool"));
      right.append(list);
      grid.append(picksTable(pool), right);
      card.append(grid);
      cards.push(card);
    }
    if (!cards.length) {
      const card = el("section", "card");
      card.append(el("h2", null, "No InferencePool configured"));
      cards.push(card);
    }
    root.replaceChildren(...cards);

    const backends = document.getElementById("backends");
    const list = backends.querySelector(".breakers");
    list.replaceChildren(...doc.backends.map(breakerRow));
    backends.hidden = !doc.backends.length;
  }

  // -- the poll loop -----------------------------------------------------------------------------

  let lastOk = 0;

  function setConnection(state, text) {
    document.body.dataset.connection = state;
    document.getElementById("conn").textContent = text;
  }

  async function poll() {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), 4000);
    try {
      const resp = await fetch("api/live", { cache: "no-store", signal: controller.signal });
      if (!resp.ok) throw new Error("HTTP " + resp.status);
      const doc = await resp.json();
      renderHeader(doc);
      renderCharts(doc);
      renderPools(doc);
      lastOk = Date.now();
      document.body.dataset.updates = String(Number(document.body.dataset.updates) + 1);
      setConnection("ok", "updated " + new Date(doc.time * 1000).toLocaleTimeString());
    } catch (err) {
      const since = lastOk ? " (last update " + Math.round((Date.now() - lastOk) / 1000) + " s ago)" : "";
      setConnection("lost", "gateway unreachable" + since);
    } finally {
      clearTimeout(timer);
      setTimeout(poll, document.hidden ? HIDDEN_POLL_MS : POLL_MS);
    }
  }

  poll();
})();
