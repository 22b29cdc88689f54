/* app.js — the COVID-19 monitoring dashboard served by payi at /.
 *
 * Data: payi's views, read with GET /views/{name} and followed with
 * GET /views/{name}/changes (Server-Sent Events: `row` carries a changed
 * row, `delete` the keys of a removed one, `reset` means "read the view
 * again").  Nothing else: no bundler, no framework, no request leaves the
 * server's origin.  uPlot (window.uPlot) draws the charts.
 *
 * Order of things for each view: open its change stream, wait for it to be
 * open (so that no change falls between the read and the stream), read the
 * view, then apply the changes that arrived meanwhile and every later one.
 * Changes carry whole rows, so applying one twice is harmless.  A stream
 * that reconnects reads its view again (the server may have restarted).
 *
 * The 7-day average is computed here from daily_by_country's rows: the mean
 * of the 7 calendar days ending on a day (a missing day counts as 0),
 * defined from the 7th day of the series on.
 *
 * Redraws are batched: a change marks parts of the page dirty, and the page
 * is redrawn at most MAX_REDRAWS_PER_SECOND times a second.
 */
(function () {
  'use strict';

  // ---------------------------------------------------------------- configuration

  /* The forecast view is provisional (its generator arrives with the COVID-19
   * app): its name and columns are named here, and only here.  `origin` is
   * optional: when the rows carry it (the day a forecast was made), only the
   * latest forecast is shown. */
  const FORECAST = {
    view: 'forecast_by_country', country: 'country', day: 'day', median: 'median', lo: 'q025', hi: 'q975',
    origin: 'origin_day',
  };

  /* The views read, and how their rows are keyed on the page.  `country`
   * names the column filtered by the country picker (per-country views). */
  const VIEWS = {
    totals: { name: 'totals_by_country', keys: ['country'] },
    weekly: { name: 'weekly_world', keys: ['week'], order: 'week' },
    daily: { name: 'daily_by_country', country: 'country', keys: ['day'], order: 'day' },
    rt: { name: 'rt_by_country', country: 'country', keys: ['day'], order: 'day' },
    forecast: { name: FORECAST.view, country: FORECAST.country, keys: [FORECAST.origin, FORECAST.day], order: FORECAST.day,
      optional: true },   // a spec without forecasts: the panel says so, the page stays live
  };

  const DEFAULT_COUNTRY = "Cote d'Ivoire";    // JHU's spelling, the paper's country
  /* JHU's names that read badly on a page; the views keep JHU's. */
  const DISPLAY_NAMES = {
    "Cote d'Ivoire": "Côte d'Ivoire",
    'Korea, South': 'South Korea',
    'Korea, North': 'North Korea',
    'Taiwan*': 'Taiwan',
    'US': 'United States',
    'Congo (Kinshasa)': 'Congo (DR)',
    'Congo (Brazzaville)': 'Congo',
    'Burma': 'Myanmar',
    'Holy See': 'Holy See (Vatican)',
    'West Bank and Gaza': 'West Bank and Gaza',
  };
  const ROW_LIMIT = 20000;                   // rows read per view and country (about 3 years of days)
  const MAX_REDRAWS_PER_SECOND = 4;
  const POSITION_REFRESH_MS = 1500;          // how often live changes re-read the views' positions
  const OPEN_WAIT_MS = 3000;                 // longest wait for a change stream before reading anyway
  const RETRY_MS = 5000;                     // a closed change stream is opened again after this
  /* A browser keeps at most 6 HTTP/1.1 connections to one server, for all its
   * tabs together, and each followed view holds one: a tab hidden this long
   * closes its streams (and reads everything again when shown). */
  const HIDDEN_PAUSE_MS = 10000;
  const CHART_HEIGHT = 240;
  const CFR_MIN_CASES = 100;                  // deaths per 100 cases shown from this many cases
  const FORECAST_CONTEXT_DAYS = 56;          // observed days shown before the forecast

  const COLORS = {
    axis: '#4a5360', grid: '#e6e9ee', tick: '#d5dae1',
    cases: '#0b4f8a', casesBar: 'rgba(11, 79, 138, 0.30)',
    deaths: '#9b1c1c', deathsBar: 'rgba(155, 28, 28, 0.28)',
    rt: '#4b2a9a', rtBand: 'rgba(75, 42, 154, 0.18)', rtEdge: 'rgba(75, 42, 154, 0.35)', one: '#1b1f24',
    forecast: '#a14a00', forecastBand: 'rgba(214, 120, 20, 0.22)', forecastEdge: 'rgba(161, 74, 0, 0.35)',
  };

  // ---------------------------------------------------------------- formatting

  const fmtInt = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
  const fmt1 = new Intl.NumberFormat('en-US', { minimumFractionDigits: 1, maximumFractionDigits: 1 });
  const fmt2 = new Intl.NumberFormat('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  const fmtCompact = new Intl.NumberFormat('en-US', { notation: 'compact', maximumFractionDigits: 1 });

  const displayName = (c) => DISPLAY_NAMES[c] || c;
  const isNum = (v) => typeof v === 'number' && Number.isFinite(v);
  const int = (v) => (isNum(v) ? fmtInt.format(v) : '–');
  const dec1 = (v) => (isNum(v) ? fmt1.format(v) : '–');
  const dec2 = (v) => (isNum(v) ? fmt2.format(v) : '–');
  /* A forecast of cases: counts, so whole numbers (its quantiles are
   * interpolated between sample paths and may carry a fraction). */
  const cases = (v) => (isNum(v) ? fmtInt.format(v) : '–');
  /* A 95 % interval of Rt: two decimals, more when both ends round alike. */
  function interval(lo, hi) {
    if (!isNum(lo) || !isNum(hi)) return '–';
    for (let d = 2; d < 6; d++) {
      const f = new Intl.NumberFormat('en-US', { minimumFractionDigits: d, maximumFractionDigits: d });
      if (f.format(lo) !== f.format(hi) || d === 5) return `${f.format(lo)}–${f.format(hi)}`;
    }
    return '–';
  }
  const DAY_S = 86400;
  /* "YYYY-MM-DD" <-> seconds since the epoch at 00:00 UTC (uPlot's x). */
  function dayToTs(day) {
    if (typeof day !== 'string' || day.length < 10) return NaN;
    return Date.UTC(+day.slice(0, 4), +day.slice(5, 7) - 1, +day.slice(8, 10)) / 1000;
  }
  function tsToDay(ts) { return new Date(ts * 1000).toISOString().slice(0, 10); }
  function clock(d) { return d.toLocaleTimeString('en-GB', { hour12: false }); }
  /* Folded for search: lower case, no accents. */
  function fold(s) { return s.normalize('NFD').replace(/[\u0300-\u036f]/g, '').toLowerCase(); }

  // ---------------------------------------------------------------- state

  const state = {
    country: null,
    sort: { key: 'cases', dir: 'desc' },
    filter: '',
    lastUpdate: null,        // Date of the last read or change applied
    changes: 0,              // changes received since the page loaded
    renders: 0,
    renderTimes: [],         // performance.now() of the last 100 redraws (for the test)
    pickerKeys: '',
    paused: false,           // streams closed while the tab is hidden
  };

  /* One entry per view: its rows and the state of its read and stream. */
  const views = {};
  for (const [id, spec] of Object.entries(VIEWS)) {
    views[id] = {
      id, spec,
      rows: new Map(),
      position: null,
      loaded: false,
      loading: false,
      gen: 0,                // bumped by every read: a stale answer is dropped
      queue: [],             // changes that arrived during a read
      error: null,           // the last read's error message
      live: 'connecting',    // connecting | live | reconnecting | closed | paused
      es: null,
    };
  }

  function keyOf(v, row) {
    const k = v.spec.keys;
    return k.length === 1 ? String(row[k[0]]) : k.map((c) => String(row[c])).join('\u0001');
  }

  function sortedRows(v, col) {
    return Array.from(v.rows.values()).sort((a, b) => (a[col] < b[col] ? -1 : a[col] > b[col] ? 1 : 0));
  }

  // ---------------------------------------------------------------- reading and following views

  function viewUrl(v, params) {
    const q = Object.entries(params).map(([k, val]) => `${encodeURIComponent(k)}=${encodeURIComponent(val)}`);
    return `/views/${encodeURIComponent(v.spec.name)}${q.length ? '?' + q.join('&') : ''}`;
  }

  async function getJson(url) {
    const res = await fetch(url, { cache: 'no-store', headers: { Accept: 'application/json' } });
    let body = null;
    try { body = await res.json(); } catch (e) { body = null; }
    if (!res.ok) {
      const msg = body && body.error && body.error.message ? body.error.message : `HTTP ${res.status}`;
      const err = new Error(msg);
      err.status = res.status;
      throw err;
    }
    return body;
  }

  /* Read the whole view (for the selected country when it is per country). */
  async function load(v) {
    const gen = ++v.gen;
    v.loading = true;
    v.queue = [];
    const params = {};
    if (v.spec.country) {
      if (!state.country) { v.loading = false; return; }
      params[v.spec.country] = state.country;
    }
    if (v.spec.order) params.order = v.spec.order;
    params.limit = ROW_LIMIT;
    try {
      const body = await getJson(viewUrl(v, params));
      if (gen !== v.gen) return;
      v.rows = new Map();
      for (const row of body.rows || []) v.rows.set(keyOf(v, row), row);
      v.position = body.position;
      v.error = null;
      v.loaded = true;
      const queued = v.queue;
      v.queue = [];
      v.loading = false;
      for (const [type, data] of queued) apply(v, type, data);
      state.lastUpdate = new Date();
    } catch (e) {
      if (gen !== v.gen) return;
      v.loading = false;
      v.queue = [];
      if (v.spec.optional && e.status === 404) {   // the spec has no such view
        v.absent = true;
        v.error = null;
        if (v.es) { const es = v.es; v.es = null; es.close(); }
        markDirty(v.id, 'status');
        return;
      }
      v.error = `${v.spec.name}: ${e.message}`;
    }
    markDirty(v.id, 'status');
  }

  function apply(v, type, data) {
    if (v.spec.country && data[v.spec.country] !== state.country) return;
    if (type === 'row') v.rows.set(keyOf(v, data), data);
    else if (type === 'delete') v.rows.delete(keyOf(v, data));
  }

  function onChange(v, type, text) {
    let data;
    try { data = JSON.parse(text); } catch (e) { return; }
    state.changes++;
    refreshPositionsSoon();
    if (v.loading) { v.queue.push([type, data]); return; }
    if (v.spec.country && data[v.spec.country] !== state.country) return;
    apply(v, type, data);
    state.lastUpdate = new Date();
    markDirty(v.id, 'status');
  }

  /* Open the view's change stream; resolves once it is open (or has failed,
   * or OPEN_WAIT_MS passed). */
  function follow(v) {
    if (v.absent) return Promise.resolve();
    return new Promise((resolve) => {
      let settled = false;
      const settle = () => { if (!settled) { settled = true; resolve(); } };
      setTimeout(settle, OPEN_WAIT_MS);
      /* A per-country view is followed for the selected country only: the
       * server filters, so the page is not sent every country's changes. */
      const only = v.spec.country && state.country
        ? `?${encodeURIComponent(v.spec.country)}=${encodeURIComponent(state.country)}` : '';
      const es = new EventSource(`/views/${encodeURIComponent(v.spec.name)}/changes${only}`);
      v.es = es;
      es.addEventListener('open', () => {
        if (v.es !== es) return;
        const again = v.live === 'reconnecting' || v.live === 'closed';
        v.live = 'live';
        markDirty('status');
        if (again) load(v);
        settle();
      });
      es.addEventListener('error', () => {
        if (v.es !== es) { settle(); return; }   // closed by pause()
        if (es.readyState === EventSource.CLOSED) {
          v.live = 'closed';
          v.es = null;
          /* A stream the server refused (the view is missing, or the server is
           * stopping): try again later, unless the view itself is missing. */
          setTimeout(() => {
            if (!state.paused && v.es === null && !v.absent && !(v.error && /no view named/.test(v.error))) follow(v);
          }, RETRY_MS);
        } else {
          v.live = 'reconnecting';   // EventSource retries by itself
        }
        markDirty('status');
        settle();
      });
      es.addEventListener('row', (ev) => onChange(v, 'row', ev.data));
      es.addEventListener('delete', (ev) => onChange(v, 'delete', ev.data));
      es.addEventListener('reset', () => load(v));
    });
  }

  /* Close every change stream (the tab is hidden). */
  function pause() {
    if (state.paused) return;
    state.paused = true;
    for (const v of Object.values(views)) {
      if (v.es) { const es = v.es; v.es = null; es.close(); }
      v.live = 'paused';
    }
    markDirty('status');
  }

  /* Follow every view again and read it again: changes made meanwhile are not replayed. */
  async function resume() {
    if (!state.paused) return;
    state.paused = false;
    for (const v of Object.values(views)) v.live = 'connecting';
    markDirty('status');
    await Promise.all(Object.values(views).map(async (v) => { await follow(v); await load(v); }));
  }

  /* Changes carry no position: after some, the views' positions are read
   * again (limit=0), at most every POSITION_REFRESH_MS. */
  let positionsTimer = 0, positionsReading = false, positionsAgain = false;
  function refreshPositionsSoon() {
    if (positionsTimer) { positionsAgain = positionsAgain || positionsReading; return; }
    positionsTimer = setTimeout(async () => {
      positionsReading = true;
      await Promise.all(Object.values(views).map(async (v) => {
        if (!v.loaded) return;
        try {
          const body = await getJson(viewUrl(v, { limit: 0 }));
          if (isNum(body.position)) v.position = body.position;
        } catch (e) { /* the status line shows the stream's state */ }
      }));
      positionsReading = false;
      positionsTimer = 0;
      markDirty('status');
      if (positionsAgain) { positionsAgain = false; refreshPositionsSoon(); }
    }, POSITION_REFRESH_MS);
  }

  function selectCountry(country, fromUser) {
    if (!country || country === state.country) return;
    state.country = country;
    for (const id of ['daily', 'rt', 'forecast']) {
      const v = views[id];
      v.rows = new Map();
      v.loaded = false;
      if (v.es) { const es = v.es; v.es = null; es.close(); }   // its filter names the old country
      if (state.paused) { load(v); continue; }
      v.live = 'connecting';
      follow(v).then(() => load(v));
    }
    if (fromUser) {
      const hash = '#country=' + encodeURIComponent(country);
      if (location.hash !== hash) history.replaceState(null, '', hash);
    }
    markDirty('country', 'totals', 'daily', 'rt', 'forecast');
  }

  function countryFromHash() {
    const m = /^#country=(.+)$/.exec(location.hash);
    if (!m) return null;
    try { return decodeURIComponent(m[1]); } catch (e) { return null; }
  }

  // ---------------------------------------------------------------- redraws

  const dirty = new Set();
  let renderTimer = 0;
  let lastRender = -Infinity;

  function markDirty(...parts) {
    for (const p of parts) dirty.add(p);
    if (renderTimer) return;
    const wait = Math.max(0, lastRender + 1000 / MAX_REDRAWS_PER_SECOND - performance.now());
    renderTimer = setTimeout(() => {
      requestAnimationFrame(() => {
        renderTimer = 0;
        lastRender = performance.now();
        render();
      });
    }, wait);
  }

  function render() {
    const d = new Set(dirty);
    dirty.clear();
    state.renders++;
    state.renderTimes.push(lastRender);
    if (state.renderTimes.length > 100) state.renderTimes.shift();
    document.documentElement.dataset.renders = String(state.renders);
    const any = (...p) => p.some((x) => d.has(x));
    if (any('totals', 'country')) { renderPicker(); renderWorld(); }
    if (any('daily', 'country')) { renderCases(); renderDeaths(); }
    if (any('rt', 'country')) renderRt();
    if (any('daily', 'forecast', 'country')) renderForecast();
    if (any('weekly')) renderWeekly();
    if (any('totals', 'daily', 'rt', 'forecast', 'country')) { renderKpis(); renderRecent(); }
    if (any('resize')) resizeCharts();
    renderStatus();
  }

  // ---------------------------------------------------------------- header: picker and status

  const $ = (id) => document.getElementById(id);

  function renderPicker() {
    const names = new Set(views.totals.rows.keys());
    names.add(DEFAULT_COUNTRY);
    if (state.country) names.add(state.country);
    const list = Array.from(names).sort((a, b) => displayName(a).localeCompare(displayName(b), 'en'));
    const keys = list.join('\u0001');
    const sel = $('country');
    if (keys !== state.pickerKeys) {
      state.pickerKeys = keys;
      const frag = document.createDocumentFragment();
      for (const c of list) {
        const o = document.createElement('option');
        o.value = c;
        o.textContent = displayName(c);
        frag.appendChild(o);
      }
      sel.replaceChildren(frag);
    }
    if (sel.value !== state.country) sel.value = state.country;
    const title = displayName(state.country);
    $('country-title').textContent = title;
    $('recent-country').textContent = title;
    document.title = `${title} · COVID-19 monitor · payi`;
  }

  function renderStatus() {
    const all = Object.values(views).filter((v) => !v.absent);
    const errors = all.filter((v) => v.error).map((v) => v.error);
    const lives = all.map((v) => v.live);
    let st, text;
    if (lives.every((l) => l === 'live')) { st = 'live'; text = 'Live'; }
    else if (state.paused) { st = 'paused'; text = 'Paused while the tab is hidden'; }
    else if (lives.some((l) => l === 'reconnecting' || l === 'closed')) { st = 'offline'; text = 'Reconnecting…'; }
    else { st = 'connecting'; text = 'Connecting…'; }
    if (errors.length && st === 'live') { st = 'error'; text = 'Live, with errors'; }
    const status = $('status');
    status.dataset.state = st;
    if ($('status-live').textContent !== text) $('status-live').textContent = text;
    const positions = all.filter((v) => isNum(v.position)).map((v) => v.position);
    const pos = positions.length ? Math.min(...positions) : null;
    status.dataset.position = pos === null ? '' : String(pos);
    $('status-pos').textContent =
      (pos === null ? '' : `· views at log position ${int(pos)}`) +
      (state.lastUpdate ? ` · updated ${clock(state.lastUpdate)}` : '');
    status.title = all.map((v) => `${v.spec.name}: position ${v.position ?? '–'}, ${v.live}`).join('\n');
    const notice = $('notice');
    if (errors.length) { notice.textContent = errors.join(' · '); notice.hidden = false; }
    else notice.hidden = true;
  }

  // ---------------------------------------------------------------- derived series

  /* The selected country's days, calendar-complete from the first to the
   * last, with the 7-day averages. */
  function dailySeries() {
    const rows = sortedRows(views.daily, 'day');
    const out = { x: [], days: [], cases: [], deaths: [], avgCases: [], avgDeaths: [] };
    if (!rows.length) return out;
    const byTs = new Map();
    for (const r of rows) { const t = dayToTs(r.day); if (isNum(t)) byTs.set(t, r); }
    const t0 = dayToTs(rows[0].day), t1 = dayToTs(rows[rows.length - 1].day);
    if (!isNum(t0) || !isNum(t1)) return out;
    let sumC = 0, sumD = 0;
    const winC = [], winD = [];
    for (let t = t0; t <= t1; t += DAY_S) {
      const r = byTs.get(t);
      const c = r && isNum(r.new_cases) ? r.new_cases : null;
      const dd = r && isNum(r.new_deaths) ? r.new_deaths : null;
      winC.push(c || 0); winD.push(dd || 0);
      sumC += c || 0; sumD += dd || 0;
      if (winC.length > 7) { sumC -= winC.shift(); sumD -= winD.shift(); }
      out.x.push(t);
      out.days.push(tsToDay(t));
      out.cases.push(c);
      out.deaths.push(dd);
      out.avgCases.push(winC.length === 7 ? sumC / 7 : null);
      out.avgDeaths.push(winD.length === 7 ? sumD / 7 : null);
    }
    return out;
  }

  function rtRows() { return sortedRows(views.rt, 'day').filter((r) => isNum(dayToTs(r.day))); }
  /* The latest forecast's rows (all rows when they carry no origin). */
  function forecastRows() {
    const rows = sortedRows(views.forecast, FORECAST.day).filter((r) => isNum(dayToTs(r[FORECAST.day])));
    let origin = null;
    for (const r of rows) if (r[FORECAST.origin] != null && (origin === null || r[FORECAST.origin] > origin)) origin = r[FORECAST.origin];
    return origin === null ? rows : rows.filter((r) => r[FORECAST.origin] === origin);
  }

  // ---------------------------------------------------------------- summary figures

  function setKpi(id, text, value, note) {
    const el = $(id);
    el.textContent = text;
    el.dataset.value = value === null || value === undefined ? '' : String(value);
    if (note !== undefined) $(id + '-note').textContent = note;
  }

  function renderKpis() {
    const t = views.totals.rows.get(state.country);
    setKpi('kpi-cases', int(t && t.cases), t ? t.cases : null,
      t && t.first_case_day ? `since ${t.first_case_day}` : '');
    setKpi('kpi-deaths', int(t && t.deaths), t ? t.deaths : null,
      t && t.last_day ? `to ${t.last_day}` : '');
    const s = dailySeries();
    const n = s.x.length;
    const lastRow = n ? views.daily.rows.get(s.days[n - 1]) : null;
    setKpi('kpi-new', int(lastRow && lastRow.new_cases), lastRow ? lastRow.new_cases : null,
      lastRow ? `on ${lastRow.day}` : 'no days yet');
    const avg = n ? s.avgCases[n - 1] : null;
    setKpi('kpi-avg7', dec1(avg), avg, avg === null ? 'needs 7 days' : `cases a day, 7 days to ${s.days[n - 1]}`);
    const rts = rtRows();
    const rt = rts.length ? rts[rts.length - 1] : null;
    setKpi('kpi-rt', dec2(rt && rt.median), rt ? rt.median : null,
      rt ? `95 % CrI ${interval(rt.q025, rt.q975)}, ${rt.day}` : 'no estimate yet');
    /* The forecast for the first day after the last reported one (else the first). */
    const fcs = forecastRows();
    const lastDay = n ? s.days[n - 1] : '';
    const fc = fcs.find((r) => r[FORECAST.day] > lastDay) || fcs[0] || null;
    setKpi('kpi-fc', cases(fc && fc[FORECAST.median]), fc ? fc[FORECAST.median] : null,
      fc ? `cases on ${fc[FORECAST.day]}, 95 % ${cases(fc[FORECAST.lo])}–${cases(fc[FORECAST.hi])}` : 'no forecast yet');
  }

  function renderRecent() {
    const s = dailySeries();
    const rt = new Map(rtRows().map((r) => [r.day, r]));
    const frag = document.createDocumentFragment();
    for (let i = s.x.length - 1; i >= 0 && i >= s.x.length - 14; i--) {
      const tr = document.createElement('tr');
      const r = rt.get(s.days[i]);
      const cells = [
        [s.days[i], ''], [int(s.cases[i]), 'n'], [dec1(s.avgCases[i]), 'n'], [int(s.deaths[i]), 'n'],
        [r ? `${dec2(r.median)} (${dec2(r.q025)}–${dec2(r.q975)})` : '–', 'n'],
      ];
      cells.forEach(([text, cls], j) => {
        const td = document.createElement(j === 0 ? 'th' : 'td');
        if (j === 0) td.scope = 'row';
        if (cls) td.className = cls;
        td.textContent = text;
        tr.appendChild(td);
      });
      frag.appendChild(tr);
    }
    $('recent').tBodies[0].replaceChildren(frag);
  }

  // ---------------------------------------------------------------- charts

  const charts = {};   // id -> { u: uPlot, el, sig }
  let rtTop = 2;       // the top of the Rt chart's y range

  const axisX = () => ({
    stroke: COLORS.axis, grid: { stroke: COLORS.grid, width: 1 }, ticks: { stroke: COLORS.tick, width: 1 },
  });
  const axisY = (scale, side) => ({
    scale, side: side || 3, stroke: COLORS.axis, size: 56,
    grid: { show: !side, stroke: COLORS.grid, width: 1 }, ticks: { stroke: COLORS.tick, width: 1 },
    values: (u, vals) => vals.map((v) => (Math.abs(v) >= 1000 ? fmtCompact.format(v) : String(+v.toFixed(2)))),
  });
  const xSeries = () => ({ label: 'Day', value: (u, ts) => (ts == null ? '–' : tsToDay(ts)) });
  const valueInt = (u, v) => (v == null ? '–' : int(v));
  const value1 = (u, v) => (v == null ? '–' : dec1(v));
  const value2 = (u, v) => (v == null ? '–' : dec2(v));
  const bars = () => uPlot.paths.bars({ size: [0.85, 24], gap: 0 });

  function chartWidth(el) { return Math.max(280, Math.floor(el.clientWidth || el.parentNode.clientWidth || 600)); }

  /* Draw (or update) a chart.  sig names the series layout: a new one
   * builds a new uPlot, the same one only swaps the data. */
  function draw(id, sig, optsFn, data, empty, summary) {
    const el = $('chart-' + id);
    let c = charts[id];
    if (!c || c.sig !== sig) {
      if (c) c.u.destroy();
      el.replaceChildren();
      const opts = Object.assign({
        width: chartWidth(el), height: CHART_HEIGHT,
        tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), 'Etc/UTC'),
        cursor: { drag: { x: true, y: false }, points: { size: 6 } },
        legend: { live: true },
        /* Away from the cursor, the legend shows the last day's values. */
        hooks: { setLegend: [lastDayLegend] },
      }, optsFn());
      const u = new uPlot(opts, data, el);
      c = charts[id] = { u, el, sig, msg: null };
    } else {
      c.u.setData(data);
    }
    lastDayLegend(c.u);
    if (empty) {
      if (!c.msg) { c.msg = document.createElement('p'); c.msg.className = 'empty'; el.appendChild(c.msg); }
      c.msg.textContent = empty;
    } else if (c.msg) { c.msg.remove(); c.msg = null; }
    $('sum-' + id).textContent = summary;
  }

  function lastDayLegend(u) {
    const last = u.data[0].length - 1;
    const away = u.cursor.left == null || u.cursor.left < 0;
    if (away && last >= 0 && u.legend.idx !== last) u.setLegend({ idx: last }, false);
  }

  function resizeCharts() {
    for (const c of Object.values(charts)) {
      const w = chartWidth(c.el);
      if (w !== c.u.width) c.u.setSize({ width: w, height: CHART_HEIGHT });
    }
  }

  function dailyChart(id, label, valuesKey, avgKey, color, barColor) {
    const s = dailySeries();
    const name = displayName(state.country);
    const n = s.x.length;
    draw(id, 'daily', () => ({
      scales: { x: { time: true } },
      axes: [axisX(), axisY('y')],
      series: [
        xSeries(),
        { label, stroke: barColor, fill: barColor, width: 0, paths: bars(), points: { show: false }, value: valueInt },
        { label: '7-day average', stroke: color, width: 2, points: { show: false }, value: value1 },
      ],
    }), [s.x, s[valuesKey], s[avgKey]], n ? null : `No daily figures yet for ${name}.`,
    n ? `${label} in ${name} from ${s.days[0]} to ${s.days[n - 1]}: ${int(s[valuesKey][n - 1])} on the last day, 7-day average ${dec1(s[avgKey][n - 1])}.`
      : `No daily figures yet for ${name}.`);
  }

  function renderCases() { dailyChart('cases', 'New cases', 'cases', 'avgCases', COLORS.cases, COLORS.casesBar); }
  function renderDeaths() { dailyChart('deaths', 'New deaths', 'deaths', 'avgDeaths', COLORS.deaths, COLORS.deathsBar); }

  function renderRt() {
    const rows = rtRows();
    const name = displayName(state.country);
    const x = rows.map((r) => dayToTs(r.day));
    const med = rows.map((r) => (isNum(r.median) ? r.median : null));
    const lo = rows.map((r) => (isNum(r.q025) ? r.q025 : null));
    const hi = rows.map((r) => (isNum(r.q975) ? r.q975 : null));
    const one = rows.map(() => 1);
    /* Early estimates can have very wide intervals, and the first weeks of
     * an epidemic (or a week of backlog reported at once) a median of 10 or
     * more: the y range follows the medians' 95th percentile, so that the
     * values around 1 stay readable; a spike or band above is cut. */
    const sortedMed = med.filter(isNum).sort((a, b) => a - b);
    const medMax = Math.max(1.5, sortedMed.length ? sortedMed[Math.floor(0.95 * (sortedMed.length - 1))] : 0);
    rtTop = Math.max(2, Math.min(Math.max(...hi.filter(isNum), 0), Math.max(4, medMax * 1.25)));
    const last = rows[rows.length - 1];
    draw('rt', 'rt', () => ({
      scales: { x: { time: true }, y: { range: () => [0, rtTop] } },
      axes: [axisX(), axisY('y')],
      bands: [{ series: [2, 3], fill: COLORS.rtBand }],
      series: [
        xSeries(),
        { label: 'Median Rt', stroke: COLORS.rt, width: 2, points: { show: false }, value: value2 },
        { label: 'Upper 97.5 %', stroke: COLORS.rtEdge, width: 1, points: { show: false }, value: value2 },
        { label: 'Lower 2.5 %', stroke: COLORS.rtEdge, width: 1, points: { show: false }, value: value2 },
        { label: 'Rt = 1', stroke: COLORS.one, width: 1, dash: [6, 4], points: { show: false }, value: () => '1' },
      ],
    }), [x, med, hi, lo, one], rows.length ? null : `No Rt estimate yet for ${name}.`,
    last ? `Rt in ${name} from ${rows[0].day} to ${last.day}: ${dec2(last.median)} on the last day (95 % credible interval ${dec2(last.q025)} to ${dec2(last.q975)}).`
      : `No Rt estimate yet for ${name}.`);
  }


  function renderForecast() {
    const s = dailySeries();
    const fcs = forecastRows();
    const name = displayName(state.country);
    const fx = fcs.map((r) => dayToTs(r[FORECAST.day]));
    const start = fx.length ? fx[0] - FORECAST_CONTEXT_DAYS * DAY_S
      : s.x.length ? s.x[s.x.length - 1] - FORECAST_CONTEXT_DAYS * DAY_S : 0;
    const obs = new Map();
    s.x.forEach((t, i) => { if (t >= start) obs.set(t, [s.cases[i], s.avgCases[i]]); });
    const fmap = new Map(fcs.map((r, i) => [fx[i], r]));
    const xs = Array.from(new Set([...obs.keys(), ...fmap.keys()])).sort((a, b) => a - b);
    const col = (f) => xs.map(f);
    const data = [
      xs,
      col((t) => (obs.has(t) ? obs.get(t)[0] : null)),
      col((t) => (obs.has(t) ? obs.get(t)[1] : null)),
      col((t) => (fmap.has(t) && isNum(fmap.get(t)[FORECAST.median]) ? fmap.get(t)[FORECAST.median] : null)),
      col((t) => (fmap.has(t) && isNum(fmap.get(t)[FORECAST.hi]) ? fmap.get(t)[FORECAST.hi] : null)),
      col((t) => (fmap.has(t) && isNum(fmap.get(t)[FORECAST.lo]) ? fmap.get(t)[FORECAST.lo] : null)),
    ];
    const first = fcs[0], last = fcs[fcs.length - 1];
    draw('forecast', 'forecast', () => ({
      scales: { x: { time: true } },
      axes: [axisX(), axisY('y')],
      bands: [{ series: [4, 5], fill: COLORS.forecastBand }],
      series: [
        xSeries(),
        { label: 'New cases', stroke: COLORS.casesBar, fill: COLORS.casesBar, width: 0, paths: bars(), points: { show: false }, value: valueInt },
        { label: '7-day average', stroke: COLORS.cases, width: 2, points: { show: false }, value: value1 },
        { label: 'Forecast median', stroke: COLORS.forecast, width: 2, dash: [8, 4], points: { show: false }, value: valueInt },
        { label: 'Upper 97.5 %', stroke: COLORS.forecastEdge, width: 1, points: { show: false }, value: valueInt },
        { label: 'Lower 2.5 %', stroke: COLORS.forecastEdge, width: 1, points: { show: false }, value: valueInt },
      ],
    }), data, fcs.length ? null : `No forecast yet for ${name}.`,
    fcs.length ? `Forecast of daily cases in ${name} from ${first[FORECAST.day]} to ${last[FORECAST.day]}: median ${cases(last[FORECAST.median])} on the last day (95 % interval ${cases(last[FORECAST.lo])} to ${cases(last[FORECAST.hi])}).`
      : `No forecast yet for ${name}.`);
  }

  function renderWeekly() {
    const rows = sortedRows(views.weekly, 'week').filter((r) => isNum(dayToTs(r.week)));
    const x = rows.map((r) => dayToTs(r.week));
    const last = rows[rows.length - 1];
    draw('weekly', 'weekly', () => ({
      scales: { x: { time: true }, cases: {}, deaths: {} },
      axes: [axisX(), axisY('cases'), axisY('deaths', 1)],
      series: [
        { label: 'Week of', value: (u, ts) => (ts == null ? '–' : tsToDay(ts)) },
        { label: 'New cases', scale: 'cases', stroke: COLORS.casesBar, fill: COLORS.casesBar, width: 0, paths: bars(), points: { show: false }, value: valueInt },
        { label: 'New deaths', scale: 'deaths', stroke: COLORS.deaths, width: 2, points: { show: false }, value: valueInt },
      ],
    }), [x, rows.map((r) => r.new_cases), rows.map((r) => r.new_deaths)], rows.length ? null : 'No weekly figures yet.',
    last ? `Weekly figures for the world from the week of ${rows[0].week} to the week of ${last.week}: ${int(last.new_cases)} cases and ${int(last.new_deaths)} deaths in the last week.`
      : 'No weekly figures yet.');
  }

  // ---------------------------------------------------------------- the world table

  const SORT_KEYS = {
    country: (r) => displayName(r.country),
    cases: (r) => r.cases,
    deaths: (r) => r.deaths,
    /* Below CFR_MIN_CASES cases the ratio says nothing (North Korea reported
     * 1 case and 6 deaths: "600"): shown as missing. */
    cfr: (r) => (isNum(r.cases) && r.cases >= CFR_MIN_CASES && isNum(r.deaths) ? (100 * r.deaths) / r.cases : null),
    first_case_day: (r) => r.first_case_day,
    last_day: (r) => r.last_day,
  };

  function compare(a, b, key, dir) {
    const f = SORT_KEYS[key];
    const va = f(a), vb = f(b);
    const na = va === null || va === undefined, nb = vb === null || vb === undefined;
    if (na || nb) return na && nb ? 0 : na ? 1 : -1;   // missing values last, either way
    const c = typeof va === 'string' ? va.localeCompare(vb, 'en') : va - vb;
    return (dir === 'asc' ? c : -c) || displayName(a.country).localeCompare(displayName(b.country), 'en');
  }

  function renderWorld() {
    const table = $('world');
    for (const th of table.tHead.rows[0].cells) {
      th.setAttribute('aria-sort', th.dataset.key !== state.sort.key ? 'none'
        : state.sort.dir === 'asc' ? 'ascending' : 'descending');
    }
    const all = Array.from(views.totals.rows.values());
    const f = fold(state.filter.trim());
    const rows = all.filter((r) => !f || fold(displayName(r.country)).includes(f) || fold(r.country).includes(f))
      .sort((a, b) => compare(a, b, state.sort.key, state.sort.dir));
    const body = table.tBodies[0];
    const focused = body.contains(document.activeElement) ? document.activeElement.dataset.country : null;
    const frag = document.createDocumentFragment();
    for (const r of rows) {
      const tr = document.createElement('tr');
      tr.dataset.country = r.country;
      if (r.country === state.country) tr.className = 'selected';
      const th = document.createElement('th');
      th.scope = 'row';
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'pick';
      b.dataset.country = r.country;
      b.textContent = displayName(r.country);
      if (r.country === state.country) b.setAttribute('aria-current', 'true');
      th.appendChild(b);
      tr.appendChild(th);
      const cfr = SORT_KEYS.cfr(r);
      for (const [text, cls] of [[int(r.cases), 'n'], [int(r.deaths), 'n'], [dec2(cfr), 'n'],
        [r.first_case_day || '–', ''], [r.last_day || '–', '']]) {
        const td = document.createElement('td');
        if (cls) td.className = cls;
        td.textContent = text;
        tr.appendChild(td);
      }
      frag.appendChild(tr);
    }
    body.replaceChildren(frag);
    $('world-count').textContent = `${rows.length} of ${all.length} countries`;
    if (focused) {
      const again = body.querySelector(`button[data-country="${CSS.escape(focused)}"]`);
      if (again) again.focus();
    }
  }

  // ---------------------------------------------------------------- start

  function wire() {
    $('country').addEventListener('change', (e) => selectCountry(e.target.value, true));
    window.addEventListener('hashchange', () => selectCountry(countryFromHash(), false));
    $('world').tHead.addEventListener('click', (e) => {
      const th = e.target.closest('th[data-key]');
      if (!th) return;
      const key = th.dataset.key;
      if (state.sort.key === key) state.sort.dir = state.sort.dir === 'asc' ? 'desc' : 'asc';
      else state.sort = { key, dir: key === 'country' || key.endsWith('day') ? 'asc' : 'desc' };
      markDirty('totals');
    });
    $('world').tBodies[0].addEventListener('click', (e) => {
      const b = e.target.closest('button.pick');
      if (!b) return;
      selectCountry(b.dataset.country, true);
      $('country').focus();
      window.scrollTo({ top: 0, behavior: 'smooth' });
    });
    let hiddenTimer = 0;
    document.addEventListener('visibilitychange', () => {
      clearTimeout(hiddenTimer);
      if (document.hidden) hiddenTimer = setTimeout(pause, HIDDEN_PAUSE_MS);
      else resume();
    });
    $('world-filter').addEventListener('input', (e) => { state.filter = e.target.value; markDirty('totals'); });
    if ('ResizeObserver' in window) {
      const ro = new ResizeObserver(() => markDirty('resize'));
      for (const el of document.querySelectorAll('.chart')) ro.observe(el);
    } else {
      window.addEventListener('resize', () => markDirty('resize'));
    }
  }

  async function start() {
    if (typeof uPlot === 'undefined') {
      $('notice').textContent = 'The charting library did not load; the figures cannot be drawn.';
      $('notice').hidden = false;
      return;
    }
    wire();
    state.country = countryFromHash() || DEFAULT_COUNTRY;
    markDirty('country', 'totals', 'daily', 'rt', 'forecast', 'weekly');
    await Promise.all(Object.values(views).map(async (v) => {
      await follow(v);
      await load(v);
    }));
  }

  /* For the browser test and for people poking at the console. */
  window.payiDashboard = { state, views, FORECAST, VIEWS, pause, resume };

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
