// obsproxy dashboard: renders GET /admin/api/observability once (with the
// chart history), then every `snapshot` event of the SSE stream. Text from
// the server is only ever set with textContent, never parsed as HTML.
(function () {
  "use strict";

  var API = "api/observability";
  var SSE = "api/observability/sse";
  var WINDOW_MS = 5 * 60 * 1000; // the charts keep the last 5 minutes
  var STUCK_SECONDS = 5; // oldest request in flight at least this old: stuck
  var SLOW_SECONDS = 1; // at least this old: worth a look

  var $ = function (id) { return document.getElementById(id); };

  // ---- formatting ------------------------------------------------------

  var intFmt = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
  var dec1 = new Intl.NumberFormat("en-US", { minimumFractionDigits: 1, maximumFractionDigits: 1 });

  function fmtInt(n) { return n == null ? "–" : intFmt.format(n); }

  function fmtRate(n) {
    if (n == null) return "–";
    if (n >= 100) return intFmt.format(n);
    return dec1.format(n);
  }

  // fmtDuration: 42s, 12m 5s, 3h 12m, 2d 4h.
  function fmtDuration(s) {
    if (s == null || !isFinite(s)) return "–";
    s = Math.max(0, Math.floor(s));
    var d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60), sec = s % 60;
    if (d > 0) return d + "d " + h + "h";
    if (h > 0) return h + "h " + m + "m";
    if (m > 0) return m + "m " + sec + "s";
    return sec + "s";
  }

  // fmtAge: seconds with one decimal under a minute, else as fmtDuration.
  function fmtAge(s) {
    if (s == null) return "–";
    return s < 60 ? dec1.format(s) + "s" : fmtDuration(s);
  }

  function fmtBytes(n) {
    if (n == null) return "–";
    if (n >= 1 << 30) return (n / (1 << 30)).toFixed(2) + " GiB";
    if (n >= 10 * (1 << 20)) return Math.round(n / (1 << 20)) + " MiB";
    if (n >= 1 << 20) return (n / (1 << 20)).toFixed(1) + " MiB";
    return Math.round(n / 1024) + " KiB";
  }

  function fmtMs(ms) {
    if (ms == null) return "–";
    if (ms >= 1000) return (ms / 1000).toFixed(2) + " s";
    if (ms >= 100) return intFmt.format(ms) + " ms";
    if (ms >= 10) return ms.toFixed(1) + " ms";
    return ms.toFixed(2) + " ms";
  }

  function fmtClock(d) {
    var p = function (n) { return (n < 10 ? "0" : "") + n; };
    return p(d.getHours()) + ":" + p(d.getMinutes()) + ":" + p(d.getSeconds());
  }

  function fmtDate(d) {
    var p = function (n) { return (n < 10 ? "0" : "") + n; };
    return d.getFullYear() + "-" + p(d.getMonth() + 1) + "-" + p(d.getDate());
  }

  // ---- DOM helpers -------------------------------------------------------

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = text;
    return e;
  }

  function badge(kind, text) {
    var b = el("span", "badge badge-" + kind, text);
    return b;
  }

  function setCard(stat, value, sub, raw, level) {
    var card = document.querySelector('[data-stat="' + stat + '"]');
    if (!card) return;
    card.querySelector(".value").textContent = value;
    card.querySelector(".sub").textContent = sub || "";
    card.querySelector(".sub").title = sub || "";
    card.dataset.value = raw == null ? "" : String(raw);
    card.dataset.level = level || "";
  }

  // ---- header and cards ---------------------------------------------------

  function renderHeader(s) {
    $("version").textContent = s.version ? "v" + s.version.replace(/^v/, "") : "";
    var h = s.health || {};
    var box = $("health");
    box.dataset.status = h.status || "unknown";
    box.dataset.draining = h.draining ? "1" : "0";
    $("health-status").textContent = h.status || "unknown";
    $("health-detail").textContent = h.detail || "";
    $("draining").hidden = !h.draining;
    document.title = (h.status && h.status !== "healthy" ? "(" + h.status + ") " : "") + "obsproxy dashboard";
  }

  function isStuck(w) { return w.oldest_in_flight_seconds >= STUCK_SECONDS; }

  function renderCards(s) {
    var p = s.pool || {}, r = s.requests || {}, c = s.connections || {};
    var down = (p.states && p.states.down) || 0;
    var stuck = (s.workers || []).filter(isStuck).length;
    var subs = [];
    if (down) subs.push(down + " down");
    if (p.states && p.states.draining) subs.push(p.states.draining + " draining");
    if (p.states && p.states.unknown) subs.push(p.states.unknown + " unknown");
    if (stuck) subs.push(stuck + " stuck");
    if (!subs.length) subs.push("all up · min " + fmtInt(p.min_up));
    var level = p.up < p.min_up ? "bad" : (down || stuck || p.up < p.total) ? "warn" : "ok";
    setCard("workers-up", fmtInt(p.up) + "/" + fmtInt(p.total), subs.join(" · "), p.up, level);
    var card = document.querySelector('[data-stat="workers-up"]');
    card.dataset.up = p.up;
    card.dataset.total = p.total;

    setCard("uptime", fmtDuration(s.uptime_seconds), "since start", s.uptime_seconds);
    setCard("pool-uptime", p.up >= p.min_up ? fmtDuration(p.uptime_seconds) : "down",
      "≥ " + fmtInt(p.min_up) + " worker" + (p.min_up === 1 ? "" : "s") + " up", p.uptime_seconds,
      p.up >= p.min_up ? "" : "bad");

    var bs = c.by_state || {};
    var conSub = fmtInt(bs.active) + " busy · " + fmtInt(bs.idle) + " idle";
    if (bs.hijacked) conSub += " · " + fmtInt(bs.hijacked) + " upgraded";
    setCard("connections", fmtInt(c.active), conSub, c.active);
    var oldest = (s.workers || []).reduce(function (m, w) { return Math.max(m, w.oldest_in_flight_seconds || 0); }, 0);
    setCard("in-flight", fmtInt(r.in_flight), oldest > 0 ? "oldest " + fmtAge(oldest) : "nothing waiting", r.in_flight,
      stuck ? "warn" : "");
    var q = s.queue || {};
    var rejected = (q.rejected_full_total || 0) + (q.rejected_timeout_total || 0);
    var qSub = !q.max_in_flight ? "no cap" :
      "cap " + fmtInt(q.max_in_flight) + "/worker · " + fmtInt(rejected) + " rejected" +
      (q.depth > 0 ? " · oldest " + fmtAge(q.oldest_wait_seconds) : "");
    setCard("queue", q.max_in_flight ? fmtInt(q.depth) : "–", qSub, q.depth || 0,
      q.depth > 0 ? "warn" : "");
    var qCard = document.querySelector('[data-stat="queue"]');
    qCard.dataset.cap = q.max_in_flight || 0;
    qCard.dataset.rejected = rejected;
    var reqSub = fmtInt(r.total) + " total · " + fmtInt(r.errors_total) + " errors";
    if (r.no_worker_total) reqSub += " · " + fmtInt(r.no_worker_total) + " no worker";
    setCard("requests-per-second", fmtRate(r.per_second), reqSub, r.per_second);
    var reqCard = document.querySelector('[data-stat="requests-per-second"]');
    reqCard.dataset.total = r.total;
    setCard("streams", fmtInt(r.streams), "SSE and WebSocket", r.streams);
    setCard("latency", r.latency_p50_ms == null ? "–" : fmtMs(r.latency_p50_ms),
      r.latency_p95_ms == null ? "no recent requests" : "p95 " + fmtMs(r.latency_p95_ms),
      r.latency_p50_ms);
    document.querySelector('[data-stat="latency"]').dataset.p95 = r.latency_p95_ms == null ? "" : r.latency_p95_ms;

    // Supervisor mode: the pool's total worker memory.
    var supervised = isSupervised(s);
    var mem = document.querySelector('[data-stat="worker-memory"]');
    mem.hidden = !supervised;
    if (supervised) {
      var running = (s.workers || []).filter(function (w) { return w.pid; }).length;
      setCard("worker-memory", fmtBytes(p.rss_bytes), fmtInt(running) + " process" + (running === 1 ? "" : "es") + " and children", p.rss_bytes);
    }
    renderCertificate(s.tls);
  }

  // renderCertificate shows the soonest-expiring certificate of the public
  // listener (null tls: plain listener, card hidden). Under 14 days is a
  // warning (the CertificateExpiresSoon alert's threshold), under 3 bad.
  function renderCertificate(tl) {
    var card = document.querySelector('[data-stat="certificate"]');
    if (!card) return;
    card.hidden = !tl;
    if (!tl) return;
    var certs = tl.certificates || [];
    var errs = fmtInt(tl.handshake_errors_total) + " failed handshakes";
    var reloads = tl.reloads_failure ? " · " + fmtInt(tl.reloads_failure) + " failed reloads" : "";
    if (!certs.length) {
      setCard("certificate", "none yet", errs + reloads, null, "warn");
      card.title = "";
      return;
    }
    var c = certs[0], left = c.expires_in_seconds, days = left / 86400;
    setCard("certificate", left <= 0 ? "expired" : fmtDuration(left), c.name + reloads, left,
      days < 3 ? "bad" : days < 14 ? "warn" : "ok");
    card.dataset.handshakeErrors = tl.handshake_errors_total;
    card.title = c.name + ", serial " + c.serial + ", issued by " + c.issuer + ", not after " + c.not_after +
      "; " + errs + reloads;
  }

  // isSupervised: obsproxy runs the workers itself (the process fields are
  // null in static mode).
  function isSupervised(s) { return (s.workers || []).some(function (w) { return w.exits != null; }); }

  // ---- workers table -------------------------------------------------------

  function cell(row, col, text, raw, cls) {
    var td = el("td", cls || "", text);
    td.dataset.col = col;
    if (raw !== undefined) td.dataset.value = raw == null ? "" : String(raw);
    row.appendChild(td);
    return td;
  }

  function numCell(row, col, text, raw) { return cell(row, col, text, raw, "num"); }

  function renderWorkers(s) {
    var body = $("workers");
    var ws = s.workers || [];
    var supervised = isSupervised(s);
    var rows = document.createDocumentFragment();
    ws.forEach(function (w) {
      var tr = el("tr");
      var stuck = isStuck(w);
      tr.dataset.worker = w.name;
      tr.dataset.state = w.state;
      tr.dataset.health = w.health;
      tr.dataset.stuck = stuck ? "1" : "0";
      tr.className = "state-" + w.state + (stuck ? " stuck" : "");

      var name = cell(tr, "name", null);
      name.appendChild(el("span", "wname", w.name));
      name.title = w.name + (w.pid ? " (pid " + w.pid + ")" : "");

      if (supervised) {
        // The address changes with every process: the pid says which one.
        var pid = cell(tr, "pid", w.pid ? String(w.pid) : "–", w.pid || 0, "addr");
        pid.title = w.address;
        // A replacement under way (rolling restart, recycling): the new
        // process starting beside this one, the old ones draining.
        var turn = [];
        if (w.starting_pid) turn.push("+" + w.starting_pid + " starting");
        (w.draining_pids || []).forEach(function (d) { turn.push(d + " draining"); });
        if (turn.length) {
          pid.appendChild(el("span", "muted replacing", "\u00a0· " + turn.join(", ")));
          pid.title = w.address + " (" + turn.join(", ") + ")";
        }
      } else {
        var addr = cell(tr, "address", null, w.address, "addr");
        addr.appendChild(el("span", "clip", w.address));
        addr.title = w.address;
      }

      var st = cell(tr, "state", null, w.state);
      st.appendChild(badge("state-" + w.state, w.state));

      var hc = cell(tr, "health", null, w.health, "health-cell");
      hc.appendChild(badge("health-" + w.health, w.health));
      // The worker's own metrics (spec section 9): null while the feature is
      // off or before the first fetch (fetches follow scrapes and pushes).
      if (w.metrics_up != null) {
        var mb = badge("metrics-" + (w.metrics_up ? "up" : "down"), w.metrics_up ? "metrics" : "no metrics");
        mb.title = w.metrics_up ? "the last fetch of its own metrics succeeded"
          : "the last fetch of its own metrics failed (obsproxy_worker_metrics_errors_total says why)";
        hc.appendChild(mb);
      }
      tr.dataset.metricsUp = w.metrics_up == null ? "" : String(w.metrics_up);
      var detail = w.detail || w.down_reason || "";
      if (w.down_reason && w.detail && w.down_reason !== w.detail) detail = w.detail + " (down: " + w.down_reason + ")";
      if (detail) {
        var d = el("span", "detail clip", detail);
        d.title = detail;
        hc.appendChild(d);
      }

      numCell(tr, "in-flight", fmtInt(w.in_flight), w.in_flight);
      var capCell = numCell(tr, "cap", w.cap_usage == null ? "–" : Math.round(w.cap_usage * 100) + "%", w.cap_usage);
      if (w.cap_usage >= 1) capCell.classList.add("slow-cell");
      var old = numCell(tr, "oldest", null, w.oldest_in_flight_seconds);
      if (stuck) {
        old.classList.add("stuck-cell");
        old.appendChild(badge("stuck", "⚠ stuck"));
        old.appendChild(el("span", "age", fmtAge(w.oldest_in_flight_seconds)));
        old.title = "a request has waited " + fmtAge(w.oldest_in_flight_seconds) + " on this worker";
      } else if (w.oldest_in_flight_seconds >= SLOW_SECONDS) {
        old.classList.add("slow-cell");
        old.textContent = fmtAge(w.oldest_in_flight_seconds);
      } else {
        old.textContent = w.oldest_in_flight_seconds <= 0 ? "–" : w.oldest_in_flight_seconds < 0.1 ? "< 0.1s" : fmtAge(w.oldest_in_flight_seconds);
      }
      numCell(tr, "requests", fmtInt(w.requests), w.requests);
      numCell(tr, "rps", fmtRate(w.requests_per_second), w.requests_per_second);
      var errs = numCell(tr, "errors", fmtInt(w.errors), w.errors);
      if (w.errors > 0) errs.classList.add("errors");
      numCell(tr, "retries", fmtInt(w.retries), w.retries);
      var up = numCell(tr, "uptime", w.running ? fmtDuration(w.uptime_seconds) : "not running", w.uptime_seconds);
      if (!w.running) up.classList.add("not-running");
      numCell(tr, "lifecycle", fmtInt(w.started) + " / " + fmtInt(w.stopped), w.started + "/" + w.stopped);
      var probe = numCell(tr, "probe", null, w.last_probe_latency_ms);
      if (w.last_probe_latency_ms == null) {
        probe.textContent = "not yet";
      } else {
        probe.appendChild(el("span", "", fmtMs(w.last_probe_latency_ms)));
        probe.appendChild(el("span", "muted", " · " + fmtAge(w.last_probe_age_seconds) + " ago"));
      }
      if (supervised) {
        numCell(tr, "memory", fmtBytes(w.rss_bytes), w.rss_bytes);
        numCell(tr, "cpu", w.cpu_percent == null ? "–" : w.cpu_percent.toFixed(1) + " %", w.cpu_percent);
        var ex = cell(tr, "exits", null, w.exits);
        ex.appendChild(el("span", "", fmtInt(w.exits)));
        if (w.last_exit_reason) {
          ex.appendChild(el("span", "muted clip exit-reason", "\u00a0· " + w.last_exit_reason));
          ex.title = "last exit: " + w.last_exit_reason;
        }
        var bo = el("span", "backoff", w.backoff_seconds ? " · restart in " + fmtAge(w.backoff_seconds) : "");
        bo.dataset.col = "backoff";
        bo.dataset.value = w.backoff_seconds == null ? "" : String(w.backoff_seconds);
        if (w.backoff_seconds) ex.classList.add("errors");
        ex.appendChild(bo);
      }
      rows.appendChild(tr);
    });
    document.querySelectorAll("#workers-table th.sup").forEach(function (th) { th.hidden = !supervised; });
    $("th-address").textContent = supervised ? "PID" : "Address";
    $("workers-table").classList.toggle("supervised", supervised);
    body.replaceChildren(rows);
    var p = s.pool || {};
    $("workers-policy").textContent = p.policy ? "balancing: " + p.policy.replace(/_/g, " ") : "";
  }

  // ---- event log -----------------------------------------------------------

  var eventsKey = "";

  function renderEvents(s) {
    var evs = s.events || [];
    var key = evs.length + ":" + (evs.length ? evs[0].seq : 0);
    if (key === eventsKey) return;
    eventsKey = key;
    var list = document.createDocumentFragment();
    evs.forEach(function (e) {
      var li = el("li", "event kind-" + e.kind);
      li.dataset.kind = e.kind;
      li.dataset.worker = e.worker || "";
      li.dataset.seq = e.seq;
      var t = new Date(e.time);
      var sameDay = t.toDateString() === new Date().toDateString();
      var time = el("time", "etime", (sameDay ? "" : fmtDate(t) + " ") + fmtClock(t));
      time.dateTime = e.time;
      time.title = t.toString();
      li.appendChild(time);
      li.appendChild(el("span", "eworker" + (e.worker ? "" : " pool"), e.worker || "pool"));
      var kb = badge("kind-" + e.kind, e.kind.replace(/_/g, " "));
      kb.title = kb.textContent;
      // A rolling restart that stopped: "failed at w2: …", not started or succeeded.
      if (e.kind === "reload" && !/^(started|succeeded)/.test(e.reason || "")) kb.classList.add("badge-reload-failed");
      li.appendChild(kb);
      var reason = el("span", "ereason", e.reason || "");
      reason.title = e.reason || "";
      li.appendChild(reason);
      list.appendChild(li);
    });
    $("events").replaceChildren(list);
    $("events-empty").hidden = evs.length > 0;
    $("events-count").textContent = evs.length ? "newest first · " + evs.length : "";
  }

  // ---- charts --------------------------------------------------------------

  // points: the chart history, oldest first, one per sample, as the API's
  // Point (t in Unix milliseconds).
  var points = [];

  function pointOf(s) {
    var r = s.requests || {}, c = s.connections || {}, p = s.pool || {};
    return {
      t: Date.parse(s.timestamp), per_second: r.per_second, in_flight: r.in_flight,
      connections: c.active, streams: r.streams, workers_up: p.up,
      latency_p50_ms: r.latency_p50_ms, latency_p95_ms: r.latency_p95_ms,
      queue_depth: (s.queue || {}).depth || 0
    };
  }

  function addPoints(list) {
    list.forEach(function (pt) {
      if (!pt || !isFinite(pt.t)) return;
      if (points.length && pt.t <= points[points.length - 1].t) {
        if (pt.t === points[points.length - 1].t) points[points.length - 1] = pt;
        return;
      }
      points.push(pt);
    });
    var cutoff = (points.length ? points[points.length - 1].t : 0) - WINDOW_MS;
    var i = 0;
    while (i < points.length && points[i].t < cutoff) i++;
    if (i) points.splice(0, i);
  }

  // mergeHistory puts history (from the JSON API) under what SSE has added.
  function mergeHistory(hist) {
    var mine = points;
    points = [];
    addPoints(hist || []);
    var last = points.length ? points[points.length - 1].t : -Infinity;
    addPoints(mine.filter(function (p) { return p.t > last; }));
  }

  var COLORS = { blue: "#2563eb", violet: "#7c3aed", teal: "#0d9488", amber: "#d97706", rose: "#e11d48" };

  var chartDefs = {
    rps: { series: [{ label: "req/s", key: "per_second", color: COLORS.blue, fmt: fmtRate }] },
    inflight: {
      integer: true,
      series: [
        { label: "in flight", key: "in_flight", color: COLORS.violet, fmt: fmtInt },
        { label: "queued", key: "queue_depth", color: COLORS.rose, fmt: fmtInt }
      ]
    },
    conns: {
      integer: true,
      series: [
        { label: "connections", key: "connections", color: COLORS.teal, fmt: fmtInt },
        { label: "streams", key: "streams", color: COLORS.amber, fmt: fmtInt }
      ]
    },
    latency: {
      series: [
        { label: "p50", key: "latency_p50_ms", color: COLORS.blue, fmt: fmtMs },
        { label: "p95", key: "latency_p95_ms", color: COLORS.rose, fmt: fmtMs }
      ]
    }
  };
  var charts = {};
  // INT_INCRS are the y-axis steps of charts that count whole things.
  var INT_INCRS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5, 2e5, 5e5, 1e6];

  function plotSize(fig) {
    var box = fig.querySelector(".plot");
    return { width: Math.max(200, Math.floor(box.clientWidth)), height: Math.max(80, Math.floor(box.clientHeight)) };
  }

  function makeChart(name, fig) {
    var def = chartDefs[name];
    var legend = fig.querySelector(".legend");
    def.values = def.series.map(function (sd) {
      var item = el("span", "lg");
      var sw = el("i", "swatch");
      sw.style.background = sd.color;
      item.appendChild(sw);
      item.appendChild(el("span", "", sd.label + " "));
      var v = el("b", "", "–");
      item.appendChild(v);
      legend.appendChild(item);
      return v;
    });
    var size = plotSize(fig);
    var opts = {
      width: size.width,
      height: size.height,
      legend: { show: false },
      cursor: { drag: { x: false, y: false }, points: { size: 6 } },
      padding: [8, 28, 0, 0],
      scales: {
        x: { time: true },
        y: { range: function (u, min, max) { return [0, max > 0 ? max * 1.15 : 1]; } }
      },
      axes: [
        { stroke: "#6b7280", grid: { stroke: "#eef0f3" }, ticks: { stroke: "#e5e7eb" }, font: "11px system-ui, sans-serif", space: 64, size: 24,
          incrs: [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600],
          values: function (u, vals) { return vals.map(function (v) { return fmtClock(new Date(v * 1000)); }); } },
        { stroke: "#6b7280", grid: { stroke: "#eef0f3" }, ticks: { stroke: "#e5e7eb" }, font: "11px system-ui, sans-serif",
          size: function (u, values) {
            var n = (values || []).reduce(function (m, v) { return Math.max(m, String(v).length); }, 1);
            return Math.max(30, n * 7 + 14);
          },
          incrs: def.integer ? INT_INCRS : undefined,
          values: function (u, vals) { return vals.map(function (v) { return v >= 1000 ? intFmt.format(v) : String(+v.toFixed(2)); }); } }
      ],
      series: [{}].concat(def.series.map(function (sd) {
        return { label: sd.label, stroke: sd.color, width: 1.6, fill: sd.color + "1f", spanGaps: false, points: { size: 4, fill: sd.color } };
      }))
    };
    var empty = el("div", "chart-empty", "waiting for data…");
    fig.querySelector(".plot").appendChild(empty);
    def.empty = empty;
    def.plot = new uPlot(opts, chartData(def), fig.querySelector(".plot"));
    charts[name] = def;
  }

  function chartData(def) {
    var xs = points.map(function (p) { return p.t / 1000; });
    return [xs].concat(def.series.map(function (sd) {
      return points.map(function (p) { return p[sd.key] == null ? null : p[sd.key]; });
    }));
  }

  function renderCharts() {
    if (typeof uPlot === "undefined") return;
    if (!Object.keys(charts).length) {
      document.querySelectorAll("figure.chart").forEach(function (fig) { makeChart(fig.dataset.chart, fig); });
    }
    var last = points.length ? points[points.length - 1] : null;
    Object.keys(charts).forEach(function (name) {
      var def = charts[name];
      var data = chartData(def);
      var hasData = data.slice(1).some(function (col) { return col.some(function (v) { return v != null; }); });
      def.empty.hidden = hasData && points.length > 1;
      def.empty.textContent = name === "latency" && points.length > 1 ? "no requests finished in the last 5 minutes" : "waiting for data…";
      def.plot.setData(data);
      def.series.forEach(function (sd, i) {
        def.values[i].textContent = last ? sd.fmt(last[sd.key]) : "–";
      });
    });
    document.querySelectorAll("figure.chart").forEach(function (fig) {
      fig.dataset.points = String(points.length);
    });
  }

  function resizeCharts() {
    Object.keys(charts).forEach(function (name) {
      var fig = document.querySelector('figure.chart[data-chart="' + name + '"]');
      charts[name].plot.setSize(plotSize(fig));
    });
  }
  var resizeTimer = 0;
  window.addEventListener("resize", function () {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(resizeCharts, 100);
  });

  // ---- rolling restart (supervisor mode) ---------------------------------------

  var RESTART = "api/workers/restart";

  // RESTART_REFUSED names the answers other than 202 and 409.
  var RESTART_REFUSED = {
    401: "not authorized (admin token)", 403: "refused (not allowed from here)",
    404: "not available (obsproxy does not run the workers)"
  };

  // restartMark is the newest event seq known when a restart answered 202
  // or 409: the roll's end is the first pool "reload" event after it whose
  // reason is not "started" ("succeeded in 14.2s", or why it stopped).
  // null while the page waits for no roll.
  var restartMark = null;

  function newestSeq() {
    var evs = (last && last.events) || [];
    return evs.length ? evs[0].seq : 0;
  }

  function setRestartStatus(state, text) {
    var st = $("restart-status");
    st.dataset.state = state;
    st.textContent = text;
    st.title = text;
  }

  // restartWorkers asks obsproxy for a rolling restart (POST
  // api/workers/restart, spec section 8) once the operator confirms. The
  // browser adds the page's credentials by itself (with OBSPROXY_ADMIN_TOKEN,
  // the token typed as the Basic password), Sec-Fetch-Site: same-origin and
  // the page's Origin, which obsproxy requires of a browser;
  // referrerPolicy "same-origin" keeps that Origin from becoming "null"
  // under the page's no-referrer policy (Fetch standard, "serializing a
  // request origin"). The answer comes at once; the roll's progress shows
  // in the event log.
  function restartWorkers() {
    var btn = $("restart-button");
    if (btn.disabled) return;
    if (!window.confirm("Restart every worker process?\n\nEach is replaced one at a time: the new process " +
      "serves before the old one drains, so no request should fail. Progress shows in the lifecycle events.")) return;
    btn.disabled = true;
    setRestartStatus("pending", "requesting…");
    fetch(RESTART, { method: "POST", cache: "no-store", credentials: "same-origin", referrerPolicy: "same-origin" })
      .then(function (r) {
        if (r.status === 202) setRestartStatus("started", "restart started at " + fmtClock(new Date()) + " · progress in the event log");
        else if (r.status === 409) setRestartStatus("running", "a restart is already running");
        else setRestartStatus("error", "restart failed: " + (RESTART_REFUSED[r.status] || "HTTP " + r.status));
        if (r.status === 202 || r.status === 409) restartMark = newestSeq();
      }, function () {
        setRestartStatus("error", "restart failed: obsproxy did not answer");
      })
      .then(function () { btn.disabled = false; });
  }

  // renderRestart shows the box in supervisor mode, and the outcome of
  // the roll the operator started (or found running) once it ends.
  function renderRestart(s) {
    $("restart").hidden = s.supervised !== true;
    if (restartMark == null) return;
    var evs = s.events || []; // newest first
    for (var i = 0; i < evs.length && evs[i].seq > restartMark; i++) {
      var e = evs[i];
      if (e.kind === "reload" && !e.worker && e.reason !== "started") {
        restartMark = null;
        var ok = /^succeeded/.test(e.reason);
        setRestartStatus(ok ? "done" : "error", "restart " + e.reason + " (" + fmtClock(new Date(e.time)) + ")");
        return;
      }
    }
  }

  // ---- the live stream -------------------------------------------------------

  var last = null; // the latest snapshot
  var lastAt = 0; // when it arrived (ms)
  var interval = 1; // sample_interval_seconds
  var received = 0;

  function render(s) {
    last = s;
    lastAt = Date.now();
    interval = s.sample_interval_seconds || interval;
    renderHeader(s);
    renderCards(s);
    renderWorkers(s);
    renderEvents(s);
    renderRestart(s);
    renderCharts();
    var ts = new Date(s.timestamp);
    $("updated").textContent = "updated " + fmtClock(isNaN(ts) ? new Date() : ts);
  }

  function setStream(state, text) {
    document.body.dataset.stream = state;
    $("stream-state").textContent = text;
    var banner = $("banner");
    if (state === "live" || state === "connecting") {
      banner.hidden = true;
    } else {
      banner.hidden = false;
      banner.textContent = (state === "stale" ? "No update for a while" : "Live updates interrupted") +
        (last ? " — figures below are from " + fmtClock(new Date(last.timestamp)) : "") +
        ". " + (state === "closed" ? "Retrying shortly…" : "Reconnecting…");
    }
  }

  function loadSnapshot() {
    return fetch(API, { cache: "no-store", credentials: "same-origin" })
      .then(function (r) {
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.json();
      })
      .then(function (s) {
        mergeHistory(s.history);
        if (!last || Date.parse(s.timestamp) >= Date.parse(last.timestamp)) render(s);
        else renderCharts();
      })
      .catch(function () { /* the stream will fill in */ });
  }

  var es = null;
  var hadError = false;
  var retryTimer = 0;

  function connect() {
    clearTimeout(retryTimer);
    if (es) es.close();
    es = new EventSource(SSE);
    es.addEventListener("open", function () {
      setStream("live", "live");
      if (hadError) {
        hadError = false;
        loadSnapshot(); // fill the gap in the charts
      }
    });
    es.addEventListener("snapshot", function (ev) {
      var s;
      try { s = JSON.parse(ev.data); } catch (e) { return; }
      addPoints([pointOf(s)]);
      render(s);
      received++;
      document.body.dataset.live = "1";
      document.body.dataset.received = String(received);
      if (document.body.dataset.stream !== "live") setStream("live", "live");
    });
    es.addEventListener("error", function () {
      hadError = true;
      if (es.readyState === EventSource.CLOSED) {
        // The server refused the stream (401, 503: too many streams) or
        // answered something else: EventSource gives up, so retry by hand.
        setStream("closed", "disconnected");
        retryTimer = setTimeout(connect, 5000);
      } else {
        setStream("reconnecting", "reconnecting…");
      }
    });
  }

  // A stream that stays open but sends nothing is stale.
  setInterval(function () {
    if (document.body.dataset.stream === "live" && lastAt && Date.now() - lastAt > Math.max(5000, interval * 3000)) {
      setStream("stale", "stale");
    }
  }, 1000);

  function start() {
    $("restart-button").addEventListener("click", restartWorkers);
    renderCharts();
    loadSnapshot().then(connect);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
