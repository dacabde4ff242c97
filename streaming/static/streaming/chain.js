// The live option chain page: one websocket per chain (docs/websocket.md), a snapshot then deltas.
// Plain JavaScript, no build step; charts by the vendored uPlot.
(function () {
  "use strict";

  // Column order per side; calls are mirrored so LTP sits next to the strike on both sides.
  const FIELDS = [
    ["ltp", "LTP"], ["change", "Chg"], ["bid", "Bid"], ["ask", "Ask"], ["oi", "OI"], ["oi_change", "OI Chg"],
    ["buildup", "Build-up"], ["volume", "Volume"], ["iv", "IV"], ["delta", "Delta"], ["gamma", "Gamma"], ["theta", "Theta"], ["vega", "Vega"],
  ];
  const CE_FIELDS = FIELDS.slice().reverse();
  const STALE_AFTER_S = 5;
  const CHART_EVERY_MS = 1000;

  const table = document.getElementById("chain");
  const rowsEl = document.getElementById("rows");
  const notice = document.getElementById("notice");
  let underlying = table.dataset.underlying;
  let expiry = table.dataset.expiry;
  const BUILDUP_TITLES = { LB: "Long build-up: price up, OI up", SB: "Short build-up: price down, OI up",
    SC: "Short covering: price up, OI down", LU: "Long unwinding: price down, OI down", N: "Neutral: no clear move" };

  let chain = null; // latest full state: {header, rows: Map(strike -> row), source, seq, ts}
  let cells = new Map(); // strike -> {tr, CE: {field: td}, PE: {field: td}}
  let lastMessageAt = 0;
  let chartsDirtyAt = 0;
  let ivChart = null;
  let oiChart = null;
  let gexChart = null;
  let straddleChart = null;
  let pcrChart = null;
  let scrolledToAtm = false;

  // ---- formatting ------------------------------------------------------------------------
  const inr = new Intl.NumberFormat("en-IN", { maximumFractionDigits: 2, minimumFractionDigits: 2 });
  function compact(n) {
    const a = Math.abs(n);
    if (a >= 1e7) return (n / 1e7).toFixed(2) + "Cr";
    if (a >= 1e5) return (n / 1e5).toFixed(2) + "L";
    if (a >= 1e3) return (n / 1e3).toFixed(1) + "K";
    return String(n);
  }
  function crore(n) { return Math.abs(n) >= 1e7 ? (n / 1e7).toFixed(0) + "Cr" : compact(n); }
  function fmt(field, v) {
    if (v === null || v === undefined) return "–";
    switch (field) {
      case "ltp": case "bid": case "ask": return inr.format(v);
      case "change": return (v > 0 ? "+" : "") + v.toFixed(2);
      case "oi": case "volume": return compact(v);
      case "oi_change": return (v > 0 ? "+" : "") + compact(v);
      case "iv": return (v * 100).toFixed(1);
      case "buildup": return v;
      case "delta": return v.toFixed(2);
      case "gamma": return v.toFixed(4);
      case "theta": case "vega": return v.toFixed(2);
      default: return String(v);
    }
  }
  function signClass(field, v) {
    if ((field === "change" || field === "oi_change") && v !== null && v !== undefined && v !== 0) {
      return v > 0 ? "up" : "down";
    }
    return "";
  }

  // ---- table -----------------------------------------------------------------------------
  function buildHeader() {
    const tr = document.getElementById("columns");
    const th = (text, cls) => { const el = document.createElement("th"); el.textContent = text; if (cls) el.className = cls; return el; };
    CE_FIELDS.forEach(([, label]) => tr.appendChild(th(label, "ce")));
    tr.appendChild(th("Strike", "strike"));
    FIELDS.forEach(([, label]) => tr.appendChild(th(label, "pe")));
  }

  function renderRows() {
    const strikes = Array.from(chain.rows.keys()).sort((a, b) => a - b);
    const frag = document.createDocumentFragment();
    cells = new Map();
    for (const strike of strikes) {
      const tr = document.createElement("tr");
      tr.dataset.strike = strike;
      const entry = { tr, CE: {}, PE: {} };
      const td = (side, field) => {
        const el = document.createElement("td");
        el.dataset.side = side;
        el.dataset.field = field;
        el.className = side.toLowerCase();
        entry[side][field] = el;
        tr.appendChild(el);
      };
      CE_FIELDS.forEach(([f]) => td("CE", f));
      const k = document.createElement("td");
      k.className = "strike";
      k.textContent = Number(strike).toLocaleString("en-IN");
      tr.appendChild(k);
      FIELDS.forEach(([f]) => td("PE", f));
      cells.set(strike, entry);
      frag.appendChild(tr);
    }
    rowsEl.replaceChildren(frag);
    for (const strike of strikes) {
      const row = chain.rows.get(strike);
      fillSide(strike, "CE", row.CE, false);
      fillSide(strike, "PE", row.PE, false);
    }
    markMoneyness();
  }

  function fillSide(strike, side, data, flash) {
    const entry = cells.get(strike);
    if (!entry) return;
    for (const [field] of FIELDS) {
      const td = entry[side][field];
      const v = data ? data[field] : null;
      const text = fmt(field, v);
      if (field === "buildup") {
        if (td.textContent !== text) {
          const tag = document.createElement("span");
          tag.className = v ? "tag tag-" + v : "";
          tag.textContent = text;
          tag.title = BUILDUP_TITLES[v] || "No OI history for the window yet";
          td.replaceChildren(tag);
        }
        continue;
      }
      if (td.textContent !== text) {
        td.textContent = text;
        td.classList.remove("up", "down");
        const cls = signClass(field, v);
        if (cls) td.classList.add(cls);
        if (flash) {
          // Alternate two identical animations: swapping the name restarts it without forcing a layout.
          if (td.classList.contains("flash-a")) td.classList.replace("flash-a", "flash-b");
          else if (td.classList.contains("flash-b")) td.classList.replace("flash-b", "flash-a");
          else td.classList.add("flash-a");
        }
      }
    }
  }

  function markMoneyness() {
    const h = chain.header || {};
    const ref = h.forward ?? h.spot; // moneyness against the synthetic forward, as the ATM strike
    for (const [strike, entry] of cells) {
      entry.tr.classList.toggle("atm", h.atm_strike !== null && h.atm_strike !== undefined && strike === h.atm_strike);
      entry.tr.classList.toggle("ce-itm", ref !== null && ref !== undefined && strike < ref);
      entry.tr.classList.toggle("pe-itm", ref !== null && ref !== undefined && strike > ref);
    }
  }

  // ---- header ----------------------------------------------------------------------------
  function setText(id, text) { const el = document.getElementById(id); if (el.textContent !== text) el.textContent = text; }
  function num(v, digits) { return v === null || v === undefined ? "–" : Number(v).toLocaleString("en-IN", { maximumFractionDigits: digits, minimumFractionDigits: digits }); }

  function renderHeader() {
    const h = chain.header || {};
    setText("h-spot", num(h.spot, 2));
    setText("h-forward", num(h.forward, 2));
    setText("h-atm", num(h.atm_strike, 0));
    setText("h-pcr-oi", num(h.pcr_oi, 2));
    setText("h-pcr-vol", num(h.pcr_volume, 2));
    setText("h-max-pain", num(h.max_pain, 0));
    setText("h-atm-iv", h.atm_iv === null || h.atm_iv === undefined ? "–" : (h.atm_iv * 100).toFixed(2) + "%");
    setText("h-ivp", num(h.iv_percentile, 0));
    setText("h-ivr", num(h.iv_rank, 0));
    document.getElementById("h-ivp-label").title = h.iv_bucket
      ? `Share of the last ${h.iv_history_sessions} sessions' closing ATM IVs (nearest ${h.iv_bucket} expiry) below today's`
      : "IV history is kept for the nearest weekly and monthly expiries";
    setText("h-straddle", num(h.straddle, 2));
    setText("h-move", h.expected_move === null || h.expected_move === undefined ? "–"
      : "±" + num(h.expected_move, 0) + " / ±" + num(h.expected_move_iv, 0));
    setText("h-gex", h.net_gex === null || h.net_gex === undefined ? "–" : (h.net_gex / 1e7).toFixed(1) + " Cr");
    setText("h-zero-gamma", num(h.zero_gamma, 0));
    setText("h-walls", num(h.gex_call_wall, 0) + " / " + num(h.gex_put_wall, 0));
    renderTermStrip(h);
    const badge = document.getElementById("source-badge");
    const live = chain.source === "live";
    badge.textContent = live ? "LIVE" : "MOCK";
    badge.className = "badge " + (live ? "live" : "mock");
    badge.title = live ? "Prices from Kite" : "Simulated prices from the mock market";
    renderTimeToExpiry();
  }

  function renderTermStrip(h) {
    const strip = document.getElementById("term-strip");
    const terms = h.term_structure || [];
    const key = terms.map((t) => t.join(":")).join("|") + "@" + expiry;
    if (strip.dataset.key === key) return;
    strip.dataset.key = key;
    const label = strip.querySelector(".term-label");
    const items = terms.map(([e, iv, years]) => {
      const a = document.createElement("a");
      a.href = "?" + new URLSearchParams({ underlying, expiry: e });
      a.dataset.expiry = e;
      a.className = e === expiry ? "current" : "";
      const days = years === null ? "" : " (" + Math.max(0, years * 365).toFixed(1) + "d)";
      a.textContent = e + days + ": " + (iv === null ? "–" : (iv * 100).toFixed(2) + "%");
      a.addEventListener("click", (event) => { event.preventDefault(); switchChain(underlying, e); });
      return a;
    });
    strip.replaceChildren(label, ...items);
  }

  function renderTimeToExpiry() {
    const h = chain && chain.header;
    if (!h || !h.expires_at) return;
    const ms = Date.parse(h.expires_at) - Date.now();
    if (ms <= 0) { setText("h-tte", "expired"); return; }
    const m = Math.floor(ms / 60000), d = Math.floor(m / 1440), hr = Math.floor((m % 1440) / 60), mi = m % 60;
    setText("h-tte", (d ? d + "d " : "") + hr + "h " + String(mi).padStart(2, "0") + "m");
  }

  function renderStaleness() {
    const badge = document.getElementById("stale-badge");
    const tick = chain && chain.header && chain.header.last_tick_at;
    const at = tick || (lastMessageAt / 1000) || 0;
    if (!at) { badge.textContent = "no data"; badge.className = "badge stale"; return; }
    const age = Math.max(0, Date.now() / 1000 - at);
    const stale = age > STALE_AFTER_S;
    badge.textContent = stale ? "stale " + formatAge(age) : "fresh " + age.toFixed(1) + " s";
    badge.className = "badge " + (stale ? "stale" : "fresh");
    badge.title = "Newest tick " + formatAge(age) + " ago";
  }
  function formatAge(s) {
    if (s < 90) return s.toFixed(0) + " s";
    if (s < 5400) return (s / 60).toFixed(0) + " min";
    return (s / 3600).toFixed(1) + " h";
  }

  // ---- charts ----------------------------------------------------------------------------
  function chartSize(el) { return { width: Math.max(260, el.clientWidth), height: 150 }; }

  function chartData() {
    const strikes = Array.from(chain.rows.keys()).sort((a, b) => a - b);
    const pick = (side, field, scale) => strikes.map((k) => {
      const s = chain.rows.get(k)[side];
      const v = s ? s[field] : null;
      return v === null || v === undefined ? null : v * scale;
    });
    const ceGex = pick("CE", "gex", 1), peGex = pick("PE", "gex", 1);
    const netGex = strikes.map((_, i) => (ceGex[i] === null && peGex[i] === null ? null : (ceGex[i] || 0) + (peGex[i] || 0)));
    const s = chain.series || { fields: [], points: [] };
    const col = (name) => { const i = s.fields.indexOf(name); return s.points.map((p) => (i < 0 ? null : p[i])); };
    return {
      iv: [strikes, pick("CE", "iv", 100), pick("PE", "iv", 100)],
      oi: [strikes, pick("CE", "oi", 1), pick("PE", "oi", 1)],
      gex: [strikes, netGex.map((v) => (v !== null && v >= 0 ? v : null)), netGex.map((v) => (v !== null && v < 0 ? v : null))],
      straddle: [col("ts"), col("straddle")],
      pcr: [col("ts"), col("pcr_oi"), col("ce_oi_change"), col("pe_oi_change")],
    };
  }

  // The intraday series: the snapshot's points, then each header's newest point (same minute replaces).
  function mergeSeriesPoint(point) {
    if (!chain || !chain.series || !point) return;
    const points = chain.series.points;
    const last = points[points.length - 1];
    if (last && last[0] === point[0]) points[points.length - 1] = point;
    else if (!last || point[0] > last[0]) points.push(point);
  }

  function atmLine(u) {
    const h = chain && chain.header;
    if (!h || h.atm_strike === null || h.atm_strike === undefined) return;
    const x = Math.round(u.valToPos(h.atm_strike, "x", true));
    const ctx = u.ctx;
    ctx.save();
    ctx.strokeStyle = "rgba(120,120,120,0.6)";
    ctx.setLineDash([4, 4]);
    ctx.beginPath();
    ctx.moveTo(x, u.bbox.top);
    ctx.lineTo(x, u.bbox.top + u.bbox.height);
    ctx.stroke();
    ctx.restore();
  }

  function renderCharts(force) {
    if (!window.uPlot || !chain || !chain.rows.size) return;
    const now = Date.now();
    if (!force && now - chartsDirtyAt < CHART_EVERY_MS) return;
    chartsDirtyAt = now;
    const data = chartData();
    const ivEl = document.getElementById("iv-chart");
    const oiEl = document.getElementById("oi-chart");
    const axes = [{ stroke: "#666", grid: { stroke: "#eee" } }, { stroke: "#666", grid: { stroke: "#eee" }, size: 56 }];
    if (!ivChart) {
      ivChart = new uPlot({
        ...chartSize(ivEl), legend: { show: true, live: false }, cursor: { drag: { x: false, y: false } },
        scales: { x: { time: false } }, axes, hooks: { draw: [atmLine] },
        series: [{ label: "Strike" },
          { label: "CE IV", stroke: "#1a7f37", width: 2, points: { size: 4 }, spanGaps: true },
          { label: "PE IV", stroke: "#c62828", width: 2, points: { size: 4 }, spanGaps: true }],
      }, data.iv, ivEl);
    } else {
      ivChart.setData(data.iv);
    }
    if (!oiChart) {
      const bars = uPlot.paths && uPlot.paths.bars;
      oiChart = new uPlot({
        ...chartSize(oiEl), legend: { show: true, live: false }, cursor: { drag: { x: false, y: false } },
        scales: { x: { time: false } }, hooks: { draw: [atmLine] },
        axes: [axes[0], { ...axes[1], values: (u, vals) => vals.map((v) => compact(v)) }],
        series: [{ label: "Strike" },
          { label: "CE OI", stroke: "#1a7f37", fill: "rgba(26,127,55,0.55)", paths: bars && bars({ size: [0.4, 40], align: -1 }) },
          { label: "PE OI", stroke: "#c62828", fill: "rgba(198,40,40,0.55)", paths: bars && bars({ size: [0.4, 40], align: 1 }) }],
      }, data.oi, oiEl);
    } else {
      oiChart.setData(data.oi);
    }
    const bars = uPlot.paths && uPlot.paths.bars;
    const gexEl = document.getElementById("gex-chart");
    if (!gexChart) {
      gexChart = new uPlot({
        ...chartSize(gexEl), legend: { show: true, live: false }, cursor: { drag: { x: false, y: false } },
        scales: { x: { time: false } }, hooks: { draw: [atmLine] },
        axes: [axes[0], { ...axes[1], size: 64, values: (u, vals) => vals.map((v) => crore(v)) }],
        series: [{ label: "Strike" },
          { label: "+GEX", stroke: "#1a7f37", fill: "rgba(26,127,55,0.55)", paths: bars && bars({ size: [0.6, 40] }) },
          { label: "−GEX", stroke: "#c62828", fill: "rgba(198,40,40,0.55)", paths: bars && bars({ size: [0.6, 40] }) }],
      }, data.gex, gexEl);
    } else {
      gexChart.setData(data.gex);
    }
    const ist = (ts) => uPlot.tzDate(new Date(ts * 1e3), "Asia/Kolkata");
    // The whole session on the x axis (09:15-15:30 IST of the series' day), however few points so far.
    const session = () => {
      const first = chain && chain.series && chain.series.points.length ? chain.series.points[0][0] : Date.now() / 1000;
      const open = Math.floor((first + 19800) / 86400) * 86400 - 19800 + 33300;
      return [open, open + 22500];
    };
    const timeScale = { time: true, range: () => session() };
    const straddleEl = document.getElementById("straddle-chart");
    if (!straddleChart) {
      straddleChart = new uPlot({
        ...chartSize(straddleEl), tzDate: ist, legend: { show: true, live: false }, cursor: { drag: { x: false, y: false } },
        scales: { x: timeScale }, axes,
        series: [{ label: "Time" }, { label: "Straddle", stroke: "#8250df", width: 2, spanGaps: true, points: { size: 4 } }],
      }, data.straddle, straddleEl);
    } else {
      straddleChart.setData(data.straddle);
    }
    const pcrEl = document.getElementById("pcr-chart");
    if (!pcrChart) {
      pcrChart = new uPlot({
        ...chartSize(pcrEl), tzDate: ist, legend: { show: true, live: false }, cursor: { drag: { x: false, y: false } },
        scales: { x: timeScale, oi: {} },
        axes: [axes[0], { ...axes[1], size: 40 },
          { scale: "oi", side: 1, stroke: "#666", grid: { show: false }, size: 48, values: (u, vals) => vals.map((v) => compact(v)) }],
        series: [{ label: "Time" },
          { label: "PCR", stroke: "#0969da", width: 2, spanGaps: true },
          { label: "CE OI chg", stroke: "#1a7f37", scale: "oi", spanGaps: true },
          { label: "PE OI chg", stroke: "#c62828", scale: "oi", spanGaps: true }],
      }, data.pcr, pcrEl);
    } else {
      pcrChart.setData(data.pcr);
    }
  }

  window.addEventListener("resize", () => {
    if (ivChart) ivChart.setSize(chartSize(document.getElementById("iv-chart")));
    if (oiChart) oiChart.setSize(chartSize(document.getElementById("oi-chart")));
    if (gexChart) gexChart.setSize(chartSize(document.getElementById("gex-chart")));
    if (straddleChart) straddleChart.setSize(chartSize(document.getElementById("straddle-chart")));
    if (pcrChart) pcrChart.setSize(chartSize(document.getElementById("pcr-chart")));
  });

  // ---- messages --------------------------------------------------------------------------
  // Rows arrive compact: [strike, ce, pe], a side being an array of values in `side_fields` order.
  function expandRows(message) {
    const fields = message.side_fields;
    const side = (values) => {
      if (!values) return null;
      const out = {};
      for (let i = 0; i < fields.length; i++) out[fields[i]] = values[i];
      return out;
    };
    return message.chain.rows.map(([strike, ce, pe]) => ({ strike, CE: side(ce), PE: side(pe) }));
  }

  function applySnapshot(payload) {
    const series = payload.series || { fields: [], points: [] };
    chain = { header: payload.header, source: payload.source, seq: payload.seq, ts: payload.ts, rows: new Map(),
      series: { fields: series.fields, points: series.points.slice() } };
    mergeSeriesPoint(payload.header && payload.header.series_last);
    for (const row of payload.rows) chain.rows.set(row.strike, { CE: row.CE || null, PE: row.PE || null });
    renderHeader();
    renderRows();
    renderCharts(true);
    if (!scrolledToAtm) {
      // Open at the money, like a trader's screen; later snapshots leave the scroll alone.
      const atm = rowsEl.querySelector("tr.atm");
      if (atm) { atm.scrollIntoView({ block: "center" }); scrolledToAtm = true; }
    }
  }

  function applyDelta(payload) {
    if (!chain) return;
    let newStrike = false;
    for (const row of payload.rows) {
      let current = chain.rows.get(row.strike);
      if (!current) { current = { CE: null, PE: null }; chain.rows.set(row.strike, current); newStrike = true; }
      if (row.CE) current.CE = row.CE;
      if (row.PE) current.PE = row.PE;
    }
    const atmMoved = chain.header.atm_strike !== payload.header.atm_strike || chain.header.spot !== payload.header.spot;
    chain.header = payload.header;
    mergeSeriesPoint(payload.header.series_last);
    chain.source = payload.source;
    chain.seq = payload.seq;
    chain.ts = payload.ts;
    renderHeader();
    if (newStrike) {
      renderRows();
    } else {
      for (const row of payload.rows) {
        if (row.CE) fillSide(row.strike, "CE", row.CE, true);
        if (row.PE) fillSide(row.strike, "PE", row.PE, true);
      }
      if (atmMoved) markMoneyness();
    }
    renderCharts(false);
  }

  // ---- connection ------------------------------------------------------------------------
  let socket = null;
  let retry = 0;
  let stopped = false;

  function setConn(text, cls) {
    const badge = document.getElementById("conn-badge");
    badge.textContent = text;
    badge.className = "badge " + cls;
  }
  function showNotice(text) { notice.textContent = text; notice.hidden = !text; }

  function connect() {
    if (!underlying || !expiry) { setConn("no chain", "stale"); return; }
    openSocket(location.protocol === "https:" ? "wss" : "ws");
  }
  let generation = 0; // bumped on a chain switch: the old socket's events are then ignored
  function openSocket(scheme) {
    const mine = ++generation;
    socket = new WebSocket(`${scheme}://${location.host}/ws/chain/${encodeURIComponent(underlying)}/${encodeURIComponent(expiry)}/`);
    setConn(retry ? "reconnecting" : "connecting", "stale");
    socket.onopen = () => { if (mine === generation) { retry = 0; setConn("connected", "fresh"); } };
    socket.onmessage = (event) => {
      if (mine !== generation) return;
      lastMessageAt = Date.now();
      let msg;
      try { msg = JSON.parse(event.data); } catch (e) { return; }
      if (msg.type === "snapshot" || msg.type === "delta") msg.chain.rows = expandRows(msg);
      if (msg.type === "snapshot") { showNotice(""); applySnapshot(msg.chain); }
      else if (msg.type === "delta") applyDelta(msg.chain);
      else if (msg.type === "waiting") showNotice(`No live data for ${underlying} ${expiry} yet: is it subscribed and is the ticker running?`);
      renderStaleness();
    };
    socket.onclose = (event) => {
      if (mine !== generation) return;
      socket = null;
      if (event.code === 4401) {
        stopped = true;
        setConn("signed out", "stale");
        showNotice("Your session has ended: sign in again.");
        return;
      }
      if (event.code === 4404) {
        stopped = true;
        setConn("unknown chain", "stale");
        showNotice(event.reason || "This chain is not known.");
        return;
      }
      if (stopped) return;
      retry += 1;
      const delay = Math.min(10000, 500 * 2 ** Math.min(retry, 5)) * (0.75 + Math.random() * 0.5);
      setConn("reconnecting", "stale");
      setTimeout(() => { if (mine === generation) connect(); }, delay);
    };
    return socket;
  }

  // Choosing another chain switches the websocket without a reload; the URL follows (bookmarkable).
  const chains = JSON.parse(document.getElementById("chains-data").textContent);
  const underlyingSel = document.getElementById("underlying");
  const expirySel = document.getElementById("expiry");
  function switchChain(u, e) {
    if (u === underlying && e === expiry) return;
    const found = chains.find((c) => c.underlying === u);
    underlying = u;
    expiry = e;
    table.dataset.underlying = u;
    table.dataset.expiry = e;
    history.replaceState(null, "", "?" + new URLSearchParams({ underlying: u, expiry: e }));
    document.title = `${u} ${e} · option chain`;
    underlyingSel.value = u;
    expirySel.replaceChildren(...(found ? found.expiries : []).map((x) => new Option(x, x, false, x === e)));
    document.getElementById("csv-chain").href = `/api/chains/${encodeURIComponent(u)}/${encodeURIComponent(e)}/chain.csv`;
    document.getElementById("csv-series").href = `/api/chains/${encodeURIComponent(u)}/${encodeURIComponent(e)}/series.csv`;
    generation += 1; // the old socket's late events are ignored from here on
    if (socket) { const old = socket; socket = null; old.close(1000, "chain switch"); }
    chain = null;
    cells = new Map();
    scrolledToAtm = false;
    retry = 0;
    stopped = false;
    rowsEl.replaceChildren();
    showNotice("");
    connect();
  }
  underlyingSel.addEventListener("change", () => {
    const found = chains.find((c) => c.underlying === underlyingSel.value);
    switchChain(underlyingSel.value, found && found.expiries.length ? found.expiries[0] : "");
  });
  expirySel.addEventListener("change", () => switchChain(underlyingSel.value, expirySel.value));
  // Ask for a fresh snapshot when the tab comes back (timers were throttled while hidden).
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ action: "snapshot" }));
  });

  // For people poking at the page in devtools (and the browser test): the live state, read-only.
  window.chainPage = { get socket() { return socket; }, get chain() { return chain; }, switchChain };

  buildHeader();
  setInterval(() => { renderStaleness(); renderTimeToExpiry(); }, 1000);
  connect();
})();
