// The kirocache dashboard: polls the admin API of the app that served it (relative URLs,
// so it works under any mount prefix) and draws its charts on <canvas>. No dependencies.
(function () {
  "use strict";
  const body = document.body;
  const anonymous = body.dataset.anonymous === "true";
  const interval = Math.max(500, Number(body.dataset.interval) || 2000);
  const STORE = "kirocache.token";
  const POINTS = 90;
  const COLORS = ["#2f6fde", "#d9480f", "#2b8a3e", "#9c36b5", "#e8590c", "#0b7285", "#c2255c"];
  const $ = (id) => document.getElementById(id);
  let token = sessionStorage.getItem(STORE) || "";
  let timer = null;
  let scope = "read";
  let keysCursor = 0;
  let lastErrors = {};
  const history = []; // {t, ns: {name: {hit, p50, p95, p99, errors}}}

  function headers(extra) {
    const h = Object.assign({ Accept: "application/json" }, extra || {});
    if (token) h.Authorization = "Bearer " + token;
    return h;
  }

  async function api(path, options) {
    const opts = Object.assign({ cache: "no-store", credentials: "omit" }, options || {});
    opts.headers = headers(opts.headers);
    const response = await fetch(path, opts);
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    return { status: response.status, ok: response.ok, data: data };
  }

  function show(text) {
    const box = $("message");
    box.textContent = text || "";
    box.hidden = !text;
  }

  function pct(v) { return v == null ? "–" : (v * 100).toFixed(1) + " %"; }
  function ms(v) { return v == null ? "–" : (v * 1000).toFixed(v < 0.001 ? 3 : 1) + " ms"; }
  function bytes(v) {
    if (v == null) return "?";
    const units = ["B", "KiB", "MiB", "GiB"];
    let i = 0;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
    return v.toFixed(i ? 1 : 0) + " " + units[i];
  }
  function clock(t) { return new Date(t * 1000).toLocaleTimeString(); }
  function li(text, sub, severity) {
    const item = document.createElement("li");
    item.textContent = text;
    if (sub) { const s = document.createElement("small"); s.textContent = sub; item.appendChild(s); }
    if (severity) item.dataset.severity = severity;
    return item;
  }
  function fill(list, items, empty) {
    list.replaceChildren(...(items.length ? items : [li(empty)]));
    list.lastElementChild.classList.toggle("muted", !items.length);
  }

  // -- charts ------------------------------------------------------------------------------

  // fixed: the top of the y axis (100 for percentages); else the data's, at least floor
  function draw(canvas, series, fixed, floor) {
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth, height = canvas.clientHeight;
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
    const g = canvas.getContext("2d");
    g.scale(ratio, ratio);
    g.clearRect(0, 0, width, height);
    const values = series.flatMap((s) => s.points.filter((v) => v != null));
    const top = fixed || Math.max(floor || 0, ...values.map((v) => v * 1.15));
    const left = 44, bottom = height - 18, right = width - 6;
    const ink = getComputedStyle(document.body).color;
    g.font = "11px system-ui, sans-serif";
    g.fillStyle = ink;
    g.globalAlpha = 0.6;
    g.strokeStyle = ink;
    g.lineWidth = 0.5;
    for (let i = 0; i <= 4; i += 1) {
      const y = 6 + (bottom - 6) * (i / 4);
      const label = top * (1 - i / 4);
      g.beginPath(); g.moveTo(left, y); g.lineTo(right, y); g.stroke();
      const text = label >= 10 || label === 0 ? label.toFixed(0) : label.toPrecision(2);
      g.fillText(text, 2, y + 4);
    }
    if (history.length) {
      g.fillText(clock(history[0].t), left, height - 4);
      const last = clock(history[history.length - 1].t);
      g.fillText(last, right - g.measureText(last).width, height - 4);
    }
    g.globalAlpha = 1;
    g.lineWidth = 2;
    let drawn = 0;
    series.forEach((s) => {
      const n = s.points.length;
      g.strokeStyle = s.color;
      g.beginPath();
      let started = false;
      s.points.forEach((v, i) => {
        if (v == null) { started = false; return; }
        const x = left + (right - left) * (n > 1 ? i / (n - 1) : 0);
        const y = bottom - (bottom - 6) * Math.min(v / top, 1);
        if (started) g.lineTo(x, y); else g.moveTo(x, y);
        started = true;
        drawn += 1;
      });
      g.stroke();
    });
    canvas.dataset.samples = String(drawn);
  }

  function selected(point) {
    const name = $("namespace").value;
    if (name) return point.ns[name] || null;
    const all = Object.values(point.ns);
    if (!all.length) return null;
    const worst = (k) => Math.max(...all.map((x) => (x[k] == null ? -1 : x[k])));
    return {
      hit: point.hit,
      p50: worst("p50"), p95: worst("p95"), p99: worst("p99"),
      errors: all.reduce((sum, x) => sum + x.errors, 0),
    };
  }

  function redraw() {
    const picked = history.map(selected);
    const get = (k, scale) => picked.map((p) => (p && p[k] != null && p[k] >= 0 ? p[k] * scale : null));
    draw($("chart-hit"), [{ color: COLORS[0], points: get("hit", 100) }], 100, 0);
    draw($("chart-latency"), [
      { color: COLORS[2], points: get("p50", 1000) },
      { color: COLORS[0], points: get("p95", 1000) },
      { color: COLORS[1], points: get("p99", 1000) },
    ], 0, 0.1);
    draw($("chart-errors"), [{ color: COLORS[1], points: get("errors", 1) }], 0, 4);
    const legend = [["p50", COLORS[2]], ["p95", COLORS[0]], ["p99", COLORS[1]]];
    $("legend").replaceChildren(...legend.map(([name, color]) => {
      const span = document.createElement("span");
      const mark = document.createElement("i");
      mark.style.background = color;
      span.append(mark, "latency " + name);
      return span;
    }));
  }

  // -- polling -----------------------------------------------------------------------------

  function renderMetrics(m) {
    const point = { t: m.time, hit: m.hit_rate, ns: {} };
    let p95 = null, errors = 0;
    m.namespaces.forEach((n) => {
      const before = lastErrors[n.namespace];
      const delta = before == null ? 0 : Math.max(0, n.errors - before);
      lastErrors[n.namespace] = n.errors;
      point.ns[n.namespace] = { hit: n.hit_rate, p50: n.latency_p50, p95: n.latency_p95,
        p99: n.latency_p99, errors: delta };
      if (n.latency_p95 != null) p95 = Math.max(p95 || 0, n.latency_p95);
      errors += n.errors;
    });
    history.push(point);
    while (history.length > POINTS) history.shift();
    $("hit-rate").textContent = pct(m.hit_rate);
    $("latency").textContent = ms(p95);
    $("errors").textContent = String(m.errors_total);
    $("pending").textContent = String(m.invalidations.invalidations_pending);
    const b = m.backend;
    $("backend").textContent = b
      ? b.backend + " · " + (b.keys == null ? "?" : b.keys) + " keys · " + bytes(b.used_memory)
      : "unreachable";
    const select = $("namespace");
    const known = new Set(Array.from(select.options).map((o) => o.value));
    m.namespaces.forEach((n) => {
      if (!known.has(n.namespace)) select.add(new Option(n.namespace, n.namespace));
    });
    const rows = m.namespaces.map((n) => {
      const row = document.createElement("tr");
      [n.namespace, String(n.reads), pct(n.hit_rate), ms(n.latency_p50), ms(n.latency_p95),
        ms(n.latency_p99), String(n.errors)].forEach((text) => {
        const cell = document.createElement("td");
        cell.textContent = text;
        row.appendChild(cell);
      });
      return row;
    });
    $("namespaces").tBodies[0].replaceChildren(...rows);
    redraw();
  }

  function renderHealth(h) {
    const badge = $("status");
    badge.dataset.status = h.status;
    badge.textContent = h.status;
    const items = h.issues.map((i) => li(i.message, "→ " + i.recommendation, i.severity));
    fill($("issues"), items, "no issues: every figure is within its threshold");
  }

  function renderAlerts(a) {
    const items = a.active.map((x) => li(x.severity.toUpperCase() + " · " + x.message,
      "since " + clock(x.started_at), x.severity));
    fill($("alerts"), items, "none");
  }

  function renderLog(l) {
    const items = l.records.slice(0, 10).map((r) => {
      const what = [].concat(r.keys.slice(0, 3), r.tags.map((t) => "tag " + t),
        r.patterns.map((p) => "pattern " + p), r.namespaces.map((n) => "namespace " + n),
        r.event ? ["event " + r.event] : [], r.action === "cleanup" ? ["cleanup"] : []);
      const by = r.token ? " by " + r.token : "";
      return li(what.join(", ") || "(nothing)", clock(r.at) + " · " + r.source + by +
        " · " + r.removed + " removed");
    });
    fill($("log"), items, "none yet");
  }

  async function poll() {
    try {
      const [m, h, a, l] = await Promise.all([
        api("api/cache/metrics"), api("api/cache/health"), api("api/cache/alerts"),
        api("api/cache/invalidations?limit=10"),
      ]);
      if (m.status === 401 || m.status === 403) {
        show("The token was refused. Type a valid token above.");
        stop();
        return;
      }
      show(m.ok ? "" : "The admin API answered " + m.status + ".");
      if (m.ok) renderMetrics(m.data);
      if (h.data && h.data.status) renderHealth(h.data);
      if (a.ok) renderAlerts(a.data);
      if (l.ok) renderLog(l.data);
    } catch (e) {
      show("The admin API cannot be reached; retrying.");
    }
  }

  function stop() { if (timer) clearInterval(timer); timer = null; }
  async function start() {
    stop();
    if (!token && !anonymous) { show("Type a token above to connect."); return; }
    const who = await api("api/cache/session");
    if (!who.ok) {
      show(who.status === 401 ? "The token was refused. Type a valid token above." :
        "The admin API answered " + who.status + ".");
      return;
    }
    $("who").textContent = "token " + who.data.token + " · scope " + who.data.scope;
    scope = who.data.scope;
    $("invalidate").querySelector("button").disabled = scope !== "admin";
    await poll();
    timer = setInterval(poll, interval);
  }

  // -- forms -------------------------------------------------------------------------------

  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    token = $("token").value.trim();
    $("token").value = "";
    if (token) sessionStorage.setItem(STORE, token);
    start();
  });
  $("forget").addEventListener("click", () => {
    token = "";
    sessionStorage.removeItem(STORE);
    $("who").textContent = "";
    stop();
    if (anonymous) start(); else show("Type a token above to connect.");
  });
  $("kind").addEventListener("change", () => {
    const kind = $("kind").value;
    $("event-fields").hidden = kind !== "event";
    const hints = { key: "user:profile:42", tag: "user:42", pattern: "search:*",
      namespace: "user:profile:", event: "user.profile.updated" };
    $("target").placeholder = hints[kind];
  });
  $("namespace").addEventListener("change", redraw);

  // -- keys ----------------------------------------------------------------------------------

  async function listKeys(more) {
    if (!more) keysCursor = 0;
    const pattern = $("pattern").value.trim() || "*";
    const r = await api("api/cache/keys?count=50&pattern=" + encodeURIComponent(pattern) +
      "&cursor=" + keysCursor);
    const list = $("keys");
    if (!r.ok) {
      fill(list, [], "refused (" + r.status + "): " + ((r.data && r.data.detail) || "error"));
      return;
    }
    const items = r.data.keys.map((key) => {
      const item = li(key);
      item.tabIndex = 0;
      item.addEventListener("click", () => inspectKey(key, item));
      return item;
    });
    if (more) list.append(...items); else fill(list, items, "no key matches");
    keysCursor = r.data.cursor;
    $("more").hidden = !keysCursor;
  }

  async function inspectKey(key, item, reveal) {
    $("keys").querySelectorAll("li").forEach((x) => x.removeAttribute("aria-selected"));
    if (item) item.setAttribute("aria-selected", "true");
    const box = $("entry");
    const r = await api("api/cache/keys/" + encodeURIComponent(key) + (reveal ? "?reveal=1" : ""));
    box.classList.toggle("muted", !r.ok);
    if (!r.ok) { box.textContent = r.status === 404 ? "gone: " + key : "refused (" + r.status + ")"; return; }
    const e = r.data;
    const rows = [["key", e.key], ["namespace", e.namespace],
      ["ttl", e.ttl == null ? "never expires" : e.ttl.toFixed(1) + " s"], ["size", bytes(e.size)],
      ["format", e.format + (e.compressed ? ", compressed" : "") + (e.encrypted ? ", encrypted" : "")],
      ["tags", e.tags.join(", ") || "none"], ["dependents", String(e.dependents)]];
    if (e.tombstone) rows.push(["state", "invalidated (tombstone): absent to readers"]);
    if (e.pending) rows.push(["state", "a pending invalidation reaches it"]);
    const list = document.createElement("dl");
    rows.forEach(([name, value]) => {
      const dt = document.createElement("dt"); dt.textContent = name;
      const dd = document.createElement("dd"); dd.textContent = value;
      list.append(dt, dd);
    });
    box.replaceChildren(list);
    if ("value" in e) {
      const pre = document.createElement("pre");
      pre.textContent = JSON.stringify(e.value, null, 2);
      box.appendChild(pre);
    } else if (scope !== "read" && !e.tombstone) {
      const show = document.createElement("button");
      show.type = "button"; show.className = "quiet"; show.textContent = "Show value";
      show.addEventListener("click", () => inspectKey(key, item, true));
      box.appendChild(show);
    }
  }

  $("keys-form").addEventListener("submit", (event) => { event.preventDefault(); listKeys(false); });
  $("more").addEventListener("click", () => listKeys(true));
  $("invalidate").addEventListener("submit", async (event) => {
    event.preventDefault();
    const kind = $("kind").value, value = $("target").value.trim();
    const body = {};
    if (kind === "event") {
      body.event = { type: value };
      if ($("entity-id").value.trim()) body.event.entity_id = $("entity-id").value.trim();
      if ($("user-id").value.trim()) body.event.user_id = $("user-id").value.trim();
    } else {
      body[kind] = value;
    }
    const result = $("result");
    result.textContent = "…";
    const r = await api("api/cache/invalidate", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    result.textContent = r.ok
      ? "Removed " + r.data.removed + (r.data.keys.length ? ": " + r.data.keys.slice(0, 5).join(", ") : "") +
        (r.data.pending ? " (" + r.data.pending + " pending)" : "")
      : "Refused (" + r.status + "): " + ((r.data && r.data.detail) || "error");
    result.dataset.status = String(r.status);
    if (r.ok) poll();
  });
  window.addEventListener("resize", redraw);

  $("interval").textContent = String(interval / 1000);
  start();
})();
