// The dashboard in headless Chromium, against the real build/payi.
//
// Starts `payi serve` with mini_covid.payi (the COVID-19 app's view names and
// columns over simple events) on a free port and a fresh data directory,
// appends a small deterministic data set with POST /streams/{stream}
// (NDJSON), then drives the page served at / with playwright-core in
// Debian's Chromium (/usr/bin/chromium; playwright's own browsers cannot be
// downloaded here).  Every figure the page shows is checked against the
// views' rows read over HTTP by this script.
//
// Environment: PAYI_BIN (default build/payi), CHROMIUM (default
// /usr/bin/chromium), PAYI_BROWSER_KEEP=1 keeps the data directory.
// Writes out/dashboard.png and out/dashboard-mobile.png.
// Ends with "N passed, N failed"; exit status 1 when anything failed.
import { mkdtempSync, mkdirSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  HERE, REPO, PAYI_BIN, CHROMIUM, OUT, startPayi as startPayiWith, stopPayi, getView, launchBrowser,
  check, assert, eq, summary, results, fmtInt, fmt1, fmt2, closedChangeStream,
} from './lib.mjs';

const SPEC = join(HERE, 'mini_covid.payi');
const LIVE_TIMEOUT_MS = 5000;   // "a live append shows up within a few seconds"

// ---------------------------------------------------------------- the data set

const FIRST_DAY = Date.UTC(2020, 2, 1);   // 2020-03-01
const NDAYS = 70;
const COUNTRIES = [
  { name: "Cote d'Ivoire", shown: "Côte d'Ivoire", stream: 'country-CIV', base: 40 },
  { name: 'Ghana', shown: 'Ghana', stream: 'country-GHA', base: 70 },
  { name: 'Senegal', shown: 'Senegal', stream: 'country-SEN', base: 25 },
  { name: 'Korea, South', shown: 'South Korea', stream: 'country-KOR', base: 120 },
];
const day = (i) => new Date(FIRST_DAY + i * 86400000).toISOString().slice(0, 10);
const round3 = (x) => Math.round(x * 1000) / 1000;
const newCases = (c, i) => Math.max(0, Math.round(c.base * (1 + Math.sin(i / 9 + c.base))) + ((i * 7 + c.base) % 11));

function dataset() {
  const byStream = new Map();
  COUNTRIES.forEach((c, ci) => {
    const lines = [];
    for (let i = 0; i < NDAYS; i++) {
      const n = newCases(c, i);
      lines.push({ type: 'DailyReported', data: { country: c.name, day: day(i), new_cases: n, new_deaths: Math.floor(n / 40) } });
    }
    for (let i = 7; i < NDAYS; i++) {
      const med = round3(0.8 + 0.6 * (1 + Math.sin(i / 12 + ci)) / 2);
      lines.push({ type: 'RtEstimated', data: { country: c.name, day: day(i), mean: round3(med + 0.02), sd: 0.1, median: med, q025: round3(med - 0.3), q975: round3(med + 0.35) } });
    }
    if (ci === 0) {   // an older forecast (not shown), then the latest one
      for (let i = NDAYS - 7; i < NDAYS + 7; i++)
        lines.push({ type: 'ForecastMade', data: { country: c.name, origin_day: day(NDAYS - 8), day: day(i), median: 999, q025: 900, q975: 1100 } });
      for (let i = NDAYS; i < NDAYS + 14; i++) {
        const med = 50 + (i - NDAYS) * 1.5;
        lines.push({ type: 'ForecastMade', data: { country: c.name, origin_day: day(NDAYS - 1), day: day(i), median: med, q025: round3(med * 0.6), q975: round3(med * 1.5) } });
      }
    }
    byStream.set(c.stream, lines);
  });
  return byStream;
}

// ---------------------------------------------------------------- payi

function startPayi(dataDir) {
  return startPayiWith(['serve', '--data', dataDir, '--spec', SPEC, '--listen', '127.0.0.1:0']);
}

async function appendNdjson(base, stream, events) {
  const res = await fetch(`${base}/streams/${encodeURIComponent(stream)}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-ndjson' },
    body: events.map((e) => JSON.stringify(e)).join('\n') + '\n',
  });
  const text = await res.text();
  const acks = text.split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l));
  const bad = acks.find((a) => a.error);
  if (!res.ok || bad || acks.length !== events.length)
    throw new Error(`append to ${stream}: HTTP ${res.status}: ${text.slice(0, 300)}`);
  return Math.max(...acks.map((a) => a.position));
}

// What the page shows for one country, read from the DOM.
async function shown(page) {
  return page.evaluate(() => {
    const k = (id) => ({ text: document.getElementById(id).textContent, value: document.getElementById(id).dataset.value });
    const first = document.querySelector('#recent tbody tr');
    return {
      title: document.getElementById('country-title').textContent,
      picker: document.getElementById('country').value,
      pickerText: document.getElementById('country').selectedOptions[0]?.textContent,
      cases: k('kpi-cases'), deaths: k('kpi-deaths'), newCases: k('kpi-new'), avg7: k('kpi-avg7'),
      rt: k('kpi-rt'), rtNote: document.getElementById('kpi-rt-note').textContent, fc: k('kpi-fc'),
      recentFirst: first ? Array.from(first.cells).map((c) => c.textContent) : null,
      recentRows: document.querySelectorAll('#recent tbody tr').length,
    };
  });
}

// The figures the page must show for a country, from the views.
async function expected(base, country) {
  const totals = (await getView(base, 'totals_by_country', { country })).rows[0];
  const daily = (await getView(base, 'daily_by_country', { country, order: 'day', limit: 100000 })).rows;
  const rt = (await getView(base, 'rt_by_country', { country, order: 'day', limit: 100000 })).rows;
  const allFc = (await getView(base, 'forecast_by_country', { country, order: 'day', limit: 100000 })).rows;
  const origin = allFc.reduce((m, r) => (r.origin_day > m ? r.origin_day : m), '');
  const fc = allFc.filter((r) => r.origin_day === origin);   // the latest forecast
  const last = daily[daily.length - 1];
  const last7 = daily.slice(-7).reduce((s, r) => s + r.new_cases, 0) / 7;   // the data set has no gaps
  return { totals, daily, rt, fc, last, avg7: last7, lastRt: rt[rt.length - 1] };
}

async function compareCountry(page, base, c) {
  const want = await expected(base, c.name);
  const got = await shown(page);
  eq(got.title, c.shown, 'heading');
  eq(got.picker, c.name, 'picker value');
  eq(got.pickerText, c.shown, 'picker label');
  eq(Number(got.cases.value), want.totals.cases, 'total cases (data-value)');
  eq(got.cases.text, fmtInt.format(want.totals.cases), 'total cases (text)');
  eq(Number(got.deaths.value), want.totals.deaths, 'total deaths');
  eq(got.deaths.text, fmtInt.format(want.totals.deaths), 'total deaths (text)');
  eq(Number(got.newCases.value), want.last.new_cases, `new cases on ${want.last.day}`);
  assert(Math.abs(Number(got.avg7.value) - want.avg7) < 1e-9, `7-day average: expected ${want.avg7}, got ${got.avg7.value}`);
  eq(got.avg7.text, fmt1.format(want.avg7), '7-day average (text)');
  eq(Number(got.rt.value), want.lastRt.median, 'latest Rt median');
  eq(got.rt.text, fmt2.format(want.lastRt.median), 'latest Rt (text)');
  assert(got.rtNote.includes(fmt2.format(want.lastRt.q025)) && got.rtNote.includes(fmt2.format(want.lastRt.q975)),
    `Rt credible interval not shown: ${got.rtNote}`);
  if (want.fc.length) {
    const next = want.fc.find((r) => r.day > want.last.day) || want.fc[0];
    eq(Number(got.fc.value), next.median, 'forecast median');
  } else {
    eq(got.fc.value, '', 'no forecast');
  }
  eq(got.recentRows, Math.min(14, want.daily.length), 'rows of the last-14-days table');
  eq(got.recentFirst[0], want.last.day, 'last day in the table');
  eq(got.recentFirst[1], fmtInt.format(want.last.new_cases), 'last day new cases in the table');
  eq(got.recentFirst[3], fmtInt.format(want.last.new_deaths), 'last day new deaths in the table');
  return want;
}

// ---------------------------------------------------------------- the run

async function main() {
  assert(existsSync(PAYI_BIN), `no ${PAYI_BIN}: run make first`);
  assert(existsSync(CHROMIUM), `no ${CHROMIUM}: apt-get install chromium`);
  assert(existsSync(join(REPO, 'web', 'dist', 'index.html')), 'no web/dist/index.html: run scripts/web.sh');
  mkdirSync(OUT, { recursive: true });
  const dataDir = mkdtempSync(join(tmpdir(), 'payi-browser-'));
  let payi = null, browser = null;
  try {
    payi = await startPayi(dataDir);
    const base = payi.url;
    console.log(`payi at ${base}, data in ${dataDir}`);

    let head = 0;
    for (const [stream, events] of dataset()) head = Math.max(head, await appendNdjson(base, stream, events));
    for (const v of ['totals_by_country', 'daily_by_country', 'weekly_world', 'rt_by_country', 'forecast_by_country'])
      await getView(base, v, { limit: 0, min_position: head + 1 });

    browser = await launchBrowser();
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: 'en-US', timezoneId: 'UTC' });
    const page = await context.newPage();
    const problems = [];      // console errors, page errors, failed requests, HTTP errors
    const requests = [];      // every URL the page asked for
    let watching = true;
    page.on('console', (m) => { if (m.type() === 'error') problems.push(`console error: ${m.text()}`); });
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('request', (r) => requests.push(r.url()));
    page.on('requestfailed', (r) => {
      if (watching && !closedChangeStream(r)) problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`);
    });
    page.on('response', (r) => { if (r.status() >= 400) problems.push(`HTTP ${r.status()}: ${r.url()}`); });
    const live = () => page.waitForFunction(() => document.getElementById('status').dataset.state === 'live', null, { timeout: 10000 });

    await check('the page loads: index.html, styles, uPlot and app.js from payi, no other origin', async () => {
      const res = await page.goto(base + '/', { waitUntil: 'load' });
      eq(res.status(), 200, 'GET / status');
      assert(res.headers()['content-type'].startsWith('text/html'), 'GET / content type');
      await live();
      await page.waitForFunction(() => document.getElementById('kpi-cases').dataset.value !== undefined &&
        document.getElementById('kpi-cases').dataset.value !== '', null, { timeout: 10000 });
      const foreign = requests.filter((u) => !u.startsWith(base));
      eq(foreign.length, 0, `requests to other origins (${foreign.join(', ')})`);
      for (const a of ['/assets/uPlot.iife.min.js', '/assets/app.js', '/assets/style.css', '/assets/uPlot.min.css'])
        assert(requests.includes(base + a), `${a} was not requested`);
      eq(await page.evaluate(() => document.querySelectorAll('.chart canvas').length), 5, 'charts drawn');
      assert((await page.title()).includes("Côte d'Ivoire"), `title: ${await page.title()}`);
    });

    await check("the default country is Côte d'Ivoire and its figures match the views", async () => {
      // Each view is read on its own: wait until every figure is there (a slow machine may show totals first).
      await page.waitForFunction(() => ['kpi-cases', 'kpi-avg7', 'kpi-rt', 'kpi-fc'].every((id) => document.getElementById(id).dataset.value) &&
        document.querySelectorAll('#recent tbody tr').length > 0, null, { timeout: 10000 });
      await compareCountry(page, base, COUNTRIES[0]);
    });

    await check('the world table lists totals_by_country and sorts by clicking its headings', async () => {
      const totals = (await getView(base, 'totals_by_country')).rows;
      const names = () => page.$$eval('#world tbody tr', (trs) => trs.map((tr) => tr.dataset.country));
      const byCases = [...totals].sort((a, b) => b.cases - a.cases).map((r) => r.country);
      eq((await names()).join('|'), byCases.join('|'), 'default order (cases, descending)');
      const civ = await page.$eval(`#world tbody tr[data-country="Cote d'Ivoire"]`, (tr) => Array.from(tr.cells).map((c) => c.textContent));
      const civRow = totals.find((r) => r.country === "Cote d'Ivoire");
      eq(civ[0], "Côte d'Ivoire", 'country cell');
      eq(civ[1], fmtInt.format(civRow.cases), 'cases cell');
      eq(civ[2], fmtInt.format(civRow.deaths), 'deaths cell');
      eq(civ[4], civRow.first_case_day, 'first case cell');
      eq(civ[5], civRow.last_day, 'last report cell');
      await page.click('#world th[data-key="country"] button');
      await page.waitForFunction(() => document.querySelector('#world th[data-key="country"]').getAttribute('aria-sort') === 'ascending');
      const alpha = COUNTRIES.map((c) => c).sort((a, b) => a.shown.localeCompare(b.shown, 'en')).map((c) => c.name);
      eq((await names()).join('|'), alpha.join('|'), 'order by country name');
      await page.click('#world th[data-key="deaths"] button');
      await page.waitForFunction(() => document.querySelector('#world th[data-key="deaths"]').getAttribute('aria-sort') === 'descending');
      const byDeaths = [...totals].sort((a, b) => b.deaths - a.deaths || a.country.localeCompare(b.country)).map((r) => r.deaths);
      eq((await page.$$eval('#world tbody tr td:nth-child(3)', (tds) => tds.map((t) => t.textContent))).join('|'),
        byDeaths.map((d) => fmtInt.format(d)).join('|'), 'order by deaths, descending');
      await page.click('#world th[data-key="deaths"] button');
      await page.waitForFunction(() => document.querySelector('#world th[data-key="deaths"]').getAttribute('aria-sort') === 'ascending');
      eq((await page.$$eval('#world tbody tr td:nth-child(3)', (tds) => tds.map((t) => t.textContent))).join('|'),
        [...byDeaths].reverse().map((d) => fmtInt.format(d)).join('|'), 'order by deaths, ascending');
      await page.click('#world th[data-key="cases"] button');   // back to the default for the screenshot
    });

    await check('switching country (the picker, and a country in the world table) shows that country', async () => {
      await page.selectOption('#country', 'Ghana');
      await page.waitForFunction(() => document.getElementById('country-title').textContent === 'Ghana');
      await page.waitForFunction((v) => document.getElementById('kpi-rt').dataset.value === String(v),
        (await expected(base, 'Ghana')).lastRt.median, { timeout: 5000 });
      await compareCountry(page, base, COUNTRIES[1]);
      assert(page.url().endsWith('#country=Ghana'), `the URL keeps the country: ${page.url()}`);
      await page.click(`#world tbody button[data-country="Korea, South"]`);
      await page.waitForFunction(() => document.getElementById('country-title').textContent === 'South Korea');
      await page.waitForFunction(() => document.getElementById('kpi-avg7').dataset.value !== '');
      await page.waitForFunction((v) => document.getElementById('kpi-rt').dataset.value === String(v),
        (await expected(base, 'Korea, South')).lastRt.median, { timeout: 5000 });
      await compareCountry(page, base, COUNTRIES[3]);
      await page.selectOption('#country', "Cote d'Ivoire");
      await page.waitForFunction(() => document.getElementById('country-title').textContent === "Côte d'Ivoire");
      await page.waitForFunction(() => document.getElementById('kpi-fc').dataset.value !== '', null, { timeout: 5000 });
      await compareCountry(page, base, COUNTRIES[0]);
    });

    await check('a live append shows up on the page over SSE within a few seconds, without re-reading the view', async () => {
      const before = await expected(base, "Cote d'Ivoire");
      const reads = requests.filter((u) => u.includes('/views/daily_by_country?')).length;
      const d = day(NDAYS);
      const t0 = Date.now();
      await appendNdjson(base, 'country-CIV', [
        { type: 'DailyReported', data: { country: "Cote d'Ivoire", day: d, new_cases: 777, new_deaths: 7 } },
        { type: 'RtEstimated', data: { country: "Cote d'Ivoire", day: d, mean: 1.25, sd: 0.1, median: 1.234, q025: 0.95, q975: 1.55 } },
      ]);
      await page.waitForFunction(({ total, d }) =>
        document.getElementById('kpi-new').dataset.value === '777' &&
        document.getElementById('kpi-cases').dataset.value === String(total) &&
        document.getElementById('kpi-rt').dataset.value === '1.234' &&
        document.querySelector('#recent tbody tr th')?.textContent === d,
      { total: before.totals.cases + 777, d }, { timeout: LIVE_TIMEOUT_MS });
      const ms = Date.now() - t0;
      console.log(`     (shown ${ms} ms after the append)`);
      const row = await page.$eval(`#world tbody tr[data-country="Cote d'Ivoire"]`, (tr) => tr.cells[1].textContent);
      eq(row, fmtInt.format(before.totals.cases + 777), 'the world table row');
      eq(requests.filter((u) => u.includes('/views/daily_by_country?')).length, reads, 'reads of daily_by_country (the change came over SSE)');
      await compareCountry(page, base, COUNTRIES[0]);
    });

    await check('the status line shows live and the views position; a burst of changes redraws at most 4 times a second', async () => {
      await live();
      const r0 = Number(await page.evaluate(() => document.documentElement.dataset.renders));
      const t0 = Date.now();
      let last = 0;
      for (let b = 0; b < 12; b++) {   // 120 changes in about 1.2 s, for another country
        const events = [];
        for (let k = 0; k < 10; k++)
          events.push({ type: 'DailyReported', data: { country: 'Senegal', day: day(NDAYS + b * 10 + k), new_cases: 5, new_deaths: 0 } });
        last = await appendNdjson(base, 'country-SEN', events);
        await new Promise((r) => setTimeout(r, 100));
      }
      const want = (await getView(base, 'totals_by_country', { country: 'Senegal', min_position: last + 1 })).rows[0];
      await page.waitForFunction((v) => document.querySelector('#world tbody tr[data-country="Senegal"]')?.cells[1].textContent === v,
        fmtInt.format(want.cases), { timeout: LIVE_TIMEOUT_MS });
      const secs = (Date.now() - t0) / 1000;
      const renders = Number(await page.evaluate(() => document.documentElement.dataset.renders)) - r0;
      const times = await page.evaluate((n) => window.payiDashboard.state.renderTimes.slice(-n), renders + 1);
      const gaps = times.slice(1).map((t, i) => t - times[i]);
      const minGap = gaps.length ? Math.min(...gaps) : Infinity;
      console.log(`     (${renders} redraws in ${secs.toFixed(2)} s for 120 changes; shortest gap ${minGap.toFixed(0)} ms)`);
      assert(renders >= 2, `only ${renders} redraws: the page did not follow the burst`);
      assert(minGap >= 245, `two redraws ${minGap.toFixed(0)} ms apart (at most 4 a second allowed)`);
      await page.waitForFunction((p) => Number(document.getElementById('status').dataset.position) >= p, last + 1, { timeout: 5000 });
      const text = await page.textContent('#status');
      assert(/Live/.test(text) && /position/.test(text), `status line: ${text}`);
    });

    await check('a hidden tab closes its change streams; shown again, it follows and re-reads every view', async () => {
      await page.evaluate(() => window.payiDashboard.pause());
      await page.waitForFunction(() => document.getElementById('status').dataset.state === 'paused');
      const open = await page.evaluate(() => Object.values(window.payiDashboard.views).filter((v) => v.es).length);
      eq(open, 0, 'streams left open while paused');
      const before = (await getView(base, 'totals_by_country', { country: "Cote d'Ivoire" })).rows[0].cases;
      await appendNdjson(base, 'country-CIV', [
        { type: 'DailyReported', data: { country: "Cote d'Ivoire", day: day(NDAYS + 1), new_cases: 11, new_deaths: 0 } }]);
      await page.evaluate(() => window.payiDashboard.resume());
      await live();
      await page.waitForFunction((v) => document.getElementById('kpi-cases').dataset.value === String(v),
        before + 11, { timeout: LIVE_TIMEOUT_MS });
      await compareCountry(page, base, COUNTRIES[0]);
    });

    await check('labels and names: every control is labelled, tables have captions and sortable headings say how they sort', async () => {
      const issues = await page.evaluate(() => {
        const out = [];
        for (const el of document.querySelectorAll('select, input')) {
          if (!el.labels || !el.labels.length) out.push(`unlabelled ${el.tagName} #${el.id}`);
        }
        for (const b of document.querySelectorAll('button')) if (!b.textContent.trim()) out.push('a button without text');
        for (const t of document.querySelectorAll('table:not(.u-legend)')) if (!t.caption) out.push(`table #${t.id} without caption`);
        for (const th of document.querySelectorAll('#world thead th')) if (!th.hasAttribute('aria-sort')) out.push('heading without aria-sort');
        for (const f of document.querySelectorAll('figure')) if (!f.querySelector('figcaption')) out.push(`figure #${f.id} without caption`);
        if (document.documentElement.lang !== 'en') out.push('no lang');
        return out;
      });
      eq(issues.join('; '), '', 'accessibility issues');
    });

    await check('static files: ETag revalidation answers 304, HEAD works, traversal and missing files are 404 JSON', async () => {
      const a = await fetch(base + '/assets/app.js');
      eq(a.status, 200, 'GET app.js');
      assert(a.headers.get('content-type').startsWith('text/javascript'), 'app.js content type');
      const etag = a.headers.get('etag');
      assert(etag && a.headers.get('cache-control') && a.headers.get('last-modified'), 'ETag, Cache-Control, Last-Modified');
      eq((await fetch(base + '/assets/app.js', { headers: { 'If-None-Match': etag } })).status, 304, 'revalidation');
      const h = await fetch(base + '/', { method: 'HEAD' });
      eq(h.status, 200, 'HEAD /');
      eq((await h.text()).length, 0, 'HEAD body');
      for (const p of ['/assets/%2e%2e/index.html', '/assets/..%2f..%2fREADME.md', '/assets/.x', '/assets/missing.js']) {
        const r = await fetch(base + p);
        eq(r.status, 404, `GET ${p}`);
        eq((await r.json()).error.code, 'not_found', `error code of ${p}`);
      }
    });

    await check('screenshots (desktop and phone widths), and no console errors or failed requests', async () => {
      await page.evaluate(() => window.scrollTo(0, 0));
      await page.waitForTimeout(400);
      await page.screenshot({ path: join(OUT, 'dashboard.png'), fullPage: true });
      await page.setViewportSize({ width: 390, height: 844 });
      await page.waitForTimeout(600);
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert(overflow <= 1, `the page is ${overflow}px wider than a phone screen`);
      await page.screenshot({ path: join(OUT, 'dashboard-mobile.png'), fullPage: true });
      await page.setViewportSize({ width: 1280, height: 900 });
      eq(problems.join('\n'), '', 'problems seen by the browser');
    });
    watching = false;
  } catch (e) {
    results.push(false);
    console.log(`FAIL setting up: ${e && e.stack ? e.stack : e}`);
    if (payi) console.log(payi.log());
  } finally {
    if (browser) await browser.close().catch(() => {});
    if (payi) await stopPayi(payi, 'SIGTERM');
    if (!process.env.PAYI_BROWSER_KEEP) rmSync(dataDir, { recursive: true, force: true });
  }
  console.log(`screenshot: ${join(OUT, 'dashboard.png')}`);
  process.exit(summary());
}

main();
