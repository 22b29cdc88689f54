// The real COVID-19 app in headless Chromium: `payi demo` (the spec
// examples/covid/covid.payi fed with the JHU CSSE history shipped in
// examples/covid/data, a day of every country at a time) on a free port and
// a fresh data directory, with the dashboard open while days arrive.
//
// Two runs of `payi demo` on one data directory, as a user would: the first
// feeds the history at full pace, without a page, up to day
// PAYI_APP_LIVE_FROM (default 1051 of 1,143: 2022-12-07) and is stopped
// with SIGINT; the second skips the days already in the log and feeds the
// rest at PAYI_APP_PACE days a second (default 10) while the page watches.
// The page follows the per-country views for its country only (the server
// filters /views/{name}/changes?country=...): at 20 days a second it stays
// within a second of the views.  Before that filter it was sent every
// country's changes, about 1,100 a day of data, and fell tens of seconds
// behind from 12 days a second on.
//
// Checked: the page loads clean on Côte d'Ivoire; its figures move while the
// feed runs and follow the views closely; once everything is in, they equal
// the views' rows read over HTTP by this script and the raw data's totals
// (88,263 cases, 834 deaths); Rt and the forecast (when the spec has
// forecast_by_country) are the views' latest; switching country shows that
// country's rows; the world table sorts on real data.
//
// Environment: PAYI_BIN (default build/payi), CHROMIUM (default
// /usr/bin/chromium), PAYI_WEB (the dashboard's files; set by run.sh),
// PAYI_APP_LIVE_FROM, PAYI_APP_PACE, PAYI_APP_DIR (default examples/covid),
// PAYI_BROWSER_KEEP=1 keeps the data directory.  Writes out/app-live.png
// (mid-feed), out/app.png (after it) and out/app-us.png (a country with a
// million cases a day).
// Ends with "N passed, N failed"; exit status 1 when anything failed.
import { mkdtempSync, mkdirSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  REPO, PAYI_BIN, CHROMIUM, OUT, startPayi, stopPayi, getView, launchBrowser,
  check, assert, eq, summary, results, fmtInt, fmt1, fmt2, fmtCases, fmtInterval, closedChangeStream,
} from './lib.mjs';

const APP = process.env.PAYI_APP_DIR || join(REPO, 'examples', 'covid');   // the app: covid.payi and data/
const PACE = Number(process.env.PAYI_APP_PACE || 10);                // days a second while the page watches
const LIVE_FROM = Number(process.env.PAYI_APP_LIVE_FROM || 1051);   // the day (1-based) the first run stops at:
                                                                    // payi demo prints days 1, 31, 61, ...
const NDAYS = 1143;
const LAST_DAY = '2023-03-09';
const CIV = "Cote d'Ivoire";                 // JHU's spelling, in the views
const CIV_SHOWN = "Côte d'Ivoire";           // the page's
const CIV_CASES = 88263, CIV_DEATHS = 834;   // the JHU files' last column for Côte d'Ivoire
const PREFEED_TIMEOUT_MS = 60000;            // the first run, up to LIVE_FROM
const FEED_TIMEOUT_MS = 60000;               // the second: the rest in, views and generators caught up
const MAX_LAG_MS = 10000;                    // how far the page may trail the views while the feed runs
const PAGE_TIMEOUT_MS = 15000;               // the page follows the views
const WATCHDOG_MS = 180000;                  // the whole run, whatever happens

// ---------------------------------------------------------------- what the page shows

async function shown(page) {
  return page.evaluate(() => {
    const k = (id) => ({
      text: document.getElementById(id).textContent, value: document.getElementById(id).dataset.value,
      note: document.getElementById(id + '-note').textContent,
    });
    const first = document.querySelector('#recent tbody tr');
    const legend = (id) => Object.fromEntries(Array.from(document.querySelectorAll(`#chart-${id} .u-legend .u-series`))
      .map((tr) => [tr.querySelector('.u-label')?.textContent ?? '', tr.querySelector('.u-value')?.textContent ?? '']));
    return {
      title: document.getElementById('country-title').textContent,
      picker: document.getElementById('country').value,
      pickerText: document.getElementById('country').selectedOptions[0]?.textContent,
      cases: k('kpi-cases'), deaths: k('kpi-deaths'), newCases: k('kpi-new'), avg7: k('kpi-avg7'),
      rt: k('kpi-rt'), fc: k('kpi-fc'),
      recentFirst: first ? Array.from(first.cells).map((c) => c.textContent) : null,
      sumRt: document.getElementById('sum-rt').textContent,
      sumForecast: document.getElementById('sum-forecast').textContent,
      legendRt: legend('rt'), legendForecast: legend('forecast'),
      state: document.getElementById('status').dataset.state,
      notice: document.getElementById('notice').hidden ? '' : document.getElementById('notice').textContent,
    };
  });
}

// ---------------------------------------------------------------- what it must show, from the views

let haveForecast = null;   // does the spec have forecast_by_country?

async function expected(base, country) {
  const totals = (await getView(base, 'totals_by_country', { country })).rows[0];
  const daily = (await getView(base, 'daily_by_country', { country, order: 'day', limit: 100000 })).rows;
  const rt = (await getView(base, 'rt_by_country', { country, order: 'day.desc', limit: 1 })).rows[0];
  const rtFirst = (await getView(base, 'rt_by_country', { country, order: 'day', limit: 1 })).rows[0];
  let fc = [];
  if (haveForecast) {
    const all = (await getView(base, 'forecast_by_country', { country, order: 'day', limit: 100000 })).rows;
    const origin = all.reduce((m, r) => (r.origin_day > m ? r.origin_day : m), '');
    fc = all.filter((r) => r.origin_day === origin);   // the latest forecast, as the page shows it
  }
  const last = daily[daily.length - 1];
  // The page's 7-day average: the 7 calendar days ending on the last one, a missing day counting 0.
  const byDay = new Map(daily.map((r) => [r.day, r.new_cases]));
  let sum = 0;
  for (let i = 0; i < 7; i++) sum += byDay.get(new Date(Date.parse(last.day) - i * 86400000).toISOString().slice(0, 10)) || 0;
  const next = fc.find((r) => r.day > last.day) || fc[0] || null;   // the forecast KPI's day
  return { totals, daily, last, avg7: sum / 7, rt, rtFirst, fc, next };
}

/* Wait until the page shows the country's current rows, then compare every figure. */
async function compareCountry(page, base, country, name) {
  const want = await expected(base, country);
  try {
    await page.waitForFunction(({ name, cases, deaths, day, rt, fc }) => {
      const v = (id) => document.getElementById(id).dataset.value;
      return document.getElementById('country-title').textContent === name &&
        v('kpi-cases') === String(cases) && v('kpi-deaths') === String(deaths) &&
        document.getElementById('kpi-new-note').textContent === `on ${day}` &&
        v('kpi-rt') === String(rt) && (fc === null || v('kpi-fc') === String(fc));
    }, { name, cases: want.totals.cases, deaths: want.totals.deaths, day: want.last.day, rt: want.rt.median,
      fc: want.next ? want.next.median : null }, { timeout: PAGE_TIMEOUT_MS });
  } catch (e) { /* the comparisons below say what differs */ }
  const got = await shown(page);
  eq(got.title, name, 'heading');
  eq(got.picker, country, 'picker value');
  eq(got.pickerText, name, 'picker label');
  eq(Number(got.cases.value), want.totals.cases, 'total cases (data-value) vs totals_by_country');
  eq(got.cases.text, fmtInt.format(want.totals.cases), 'total cases (text)');
  eq(Number(got.deaths.value), want.totals.deaths, 'total deaths (data-value) vs totals_by_country');
  eq(got.deaths.text, fmtInt.format(want.totals.deaths), 'total deaths (text)');
  eq(got.deaths.note, `to ${want.totals.last_day}`, 'last day of the totals');
  eq(got.newCases.note, `on ${want.last.day}`, 'last day shown');
  eq(Number(got.newCases.value), want.last.new_cases, `new cases on ${want.last.day} vs daily_by_country`);
  eq(got.newCases.text, fmtInt.format(want.last.new_cases), 'new cases (text)');
  assert(Math.abs(Number(got.avg7.value) - want.avg7) < 1e-9, `7-day average: expected ${want.avg7}, got ${got.avg7.value}`);
  eq(got.avg7.text, fmt1.format(want.avg7), '7-day average (text)');
  eq(got.recentFirst[0], want.last.day, 'last day in the 14-day table');
  eq(got.recentFirst[1], fmtInt.format(want.last.new_cases), 'its new cases');
  eq(got.recentFirst[3], fmtInt.format(want.last.new_deaths), 'its new deaths');
  return { want, got };
}

function compareRt(got, want, name) {
  const r = want.rt;
  eq(Number(got.rt.value), r.median, `latest Rt median (${r.day}) vs rt_by_country`);
  eq(got.rt.text, fmt2.format(r.median), 'latest Rt (text)');
  eq(got.rt.note, `95 % CrI ${fmtInterval(r.q025, r.q975)}, ${r.day}`, 'Rt credible interval and day');
  eq(got.sumRt, `Rt in ${name} from ${want.rtFirst.day} to ${r.day}: ${fmt2.format(r.median)} on the last day ` +
    `(95 % credible interval ${fmt2.format(r.q025)} to ${fmt2.format(r.q975)}).`, 'Rt chart summary');
  eq(got.legendRt['Median Rt'], fmt2.format(r.median), 'Rt chart legend, median on the last day');
  eq(got.legendRt['Upper 97.5 %'], fmt2.format(r.q975), 'Rt chart legend, upper bound');
  eq(got.legendRt['Lower 2.5 %'], fmt2.format(r.q025), 'Rt chart legend, lower bound');
  if (want.last.day === r.day) eq(got.recentFirst[4], `${fmt2.format(r.median)} (${fmt2.format(r.q025)}–${fmt2.format(r.q975)})`, 'Rt in the 14-day table');
}

function compareForecast(got, want, name) {
  assert(want.fc.length > 0, `forecast_by_country has no rows for ${name}`);
  const n = want.next, first = want.fc[0], last = want.fc[want.fc.length - 1];
  assert(n.day > want.last.day, `the latest forecast (origin ${n.origin_day}) has no day after the last reported day ${want.last.day}`);
  eq(n.origin_day, want.last.day, 'the latest forecast starts from the last reported day');
  eq(Number(got.fc.value), n.median, `forecast median for ${n.day} vs forecast_by_country`);
  eq(got.fc.text, fmtCases(n.median), 'forecast (text)');
  eq(got.fc.note, `cases on ${n.day}, 95 % ${fmtCases(n.q025)}–${fmtCases(n.q975)}`, 'forecast day and interval');
  eq(got.sumForecast, `Forecast of daily cases in ${name} from ${first.day} to ${last.day}: median ${fmtCases(last.median)} ` +
    `on the last day (95 % interval ${fmtCases(last.q025)} to ${fmtCases(last.q975)}).`, 'forecast chart summary');
  eq(got.legendForecast['Forecast median'], fmtInt.format(last.median), `forecast chart legend, median on ${last.day}`);
  eq(got.legendForecast['Upper 97.5 %'], fmtInt.format(last.q975), 'forecast chart legend, upper bound');
  eq(got.legendForecast['Lower 2.5 %'], fmtInt.format(last.q025), 'forecast chart legend, lower bound');
}

// ---------------------------------------------------------------- the run

let payi = null, prefeed = null, browser = null, dataDir = null, cleaning = null;

function cleanup() {
  cleaning ??= (async () => {
    if (browser) await Promise.race([browser.close().catch(() => {}), new Promise((r) => setTimeout(r, 5000))]);
    if (prefeed) await stopPayi(prefeed, 'SIGINT', 5000);
    if (payi) await stopPayi(payi, 'SIGINT', 5000);
    if (dataDir && !process.env.PAYI_BROWSER_KEEP) rmSync(dataDir, { recursive: true, force: true });
  })();
  return cleaning;
}

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.once(sig, async () => {
    console.log(`FAIL interrupted (${sig})`);
    await cleanup();
    console.log('0 passed, 1 failed');
    process.exit(1);
  });
}

async function main() {
  const t0 = Date.now();
  const watchdog = setTimeout(async () => {
    console.log(`FAIL the run took more than ${WATCHDOG_MS / 1000} s`);
    await cleanup();
    results.push(false);
    process.exit(summary());
  }, WATCHDOG_MS);
  try {
    assert(existsSync(PAYI_BIN), `no ${PAYI_BIN}: run make first`);
    assert(existsSync(CHROMIUM), `no ${CHROMIUM}: apt-get install chromium`);
    assert(existsSync(join(process.env.PAYI_WEB || join(REPO, 'web', 'dist'), 'index.html')), 'no web/dist/index.html: run scripts/web.sh');
    assert(existsSync(join(APP, 'covid.payi')), `no ${APP}/covid.payi`);
    assert(LIVE_FROM % 30 === 1 && LIVE_FROM < NDAYS, `PAYI_APP_LIVE_FROM must be 1, 31, 61, ... below ${NDAYS} (payi demo prints those days)`);
    mkdirSync(OUT, { recursive: true });
    dataDir = mkdtempSync(join(tmpdir(), 'payi-browser-app-'));

    const launching = launchBrowser();
    launching.catch(() => {});
    const dataArg = ['--data', join(dataDir, 'data'), '--listen', '127.0.0.1:0', '--app', APP];

    // The first run: the history up to LIVE_FROM, as fast as it goes, no page.
    prefeed = await startPayi(['demo', '--pace', '100000', ...dataArg]);
    const stoppedAt = (await prefeed.waitLog(new RegExp(`(\\d{4}-\\d\\d-\\d\\d) \\(day ${LIVE_FROM} of ${NDAYS}\\)`), PREFEED_TIMEOUT_MS))[1];
    await stopPayi(prefeed, 'SIGINT', 5000);
    const ex = await prefeed.exited;
    assert(ex.code === 0, `the first payi demo did not stop cleanly on SIGINT (${ex.code ?? ex.signal}):\n${prefeed.log().slice(-500)}`);
    prefeed = null;
    console.log(`first run: fed up to ${stoppedAt} (day ${LIVE_FROM} of ${NDAYS}) in ${((Date.now() - t0) / 1000).toFixed(1)} s, stopped`);

    browser = await launching;
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: 'en-US', timezoneId: 'UTC' });
    const page = await context.newPage();
    page.setDefaultTimeout(PAGE_TIMEOUT_MS);
    // What the page shows, sampled in the page itself (no round trip to this script).
    await page.addInitScript(() => {
      window.appTestTimeline = [];
      setInterval(() => {
        const m = /on (\d{4}-\d\d-\d\d)/.exec(document.getElementById('kpi-new-note')?.textContent || '');
        if (m && window.appTestTimeline.length < 2000) window.appTestTimeline.push([Date.now(), m[1]]);
      }, 100);
    });

    // The second run: the rest, at PACE, with the page open.
    const t1 = Date.now();
    payi = await startPayi(['demo', '--pace', String(PACE), ...dataArg]);
    const base = payi.url;
    const fedAt = payi.waitLog(/the whole history is in: .*up to date after ([\d.]+) s/, FEED_TIMEOUT_MS);
    fedAt.catch(() => {});
    let feedDone = false;
    fedAt.then(() => { feedDone = true; }, () => {});
    console.log(`second run: payi demo --pace ${PACE} at ${base}, data in ${dataDir}`);
    // The views' progress, sampled by this script, to compare with the page's.
    const viewTimeline = [];
    const sampling = (async () => {
      while (!feedDone && Date.now() - t1 < FEED_TIMEOUT_MS) {
        try {
          const r = (await getView(base, 'totals_by_country', { country: CIV }, 5000)).rows[0];
          if (r) viewTimeline.push([Date.now(), r.last_day]);
        } catch (e) { /* the check below says when there is nothing */ }
        await new Promise((r) => setTimeout(r, 100));
      }
    })();

    try {
      await getView(base, 'forecast_by_country', { limit: 0 });
      haveForecast = true;
    } catch (e) {
      if (e.status !== 404) throw e;
      haveForecast = false;
    }

    const problems = [];      // console errors, page errors, failed requests, HTTP errors
    const navigations = [];
    let watching = true;
    const forecastMissing = (url) => !haveForecast && /\/views\/forecast_by_country\b/.test(url || '');
    page.on('console', (m) => {
      if (m.type() === 'error' && !forecastMissing(m.location()?.url)) problems.push(`console error: ${m.text()} (${m.location()?.url})`);
    });
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('requestfailed', (r) => { if (watching && !forecastMissing(r.url()) && !closedChangeStream(r)) problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`); });
    page.on('response', (r) => { if (r.status() >= 400 && !forecastMissing(r.url())) problems.push(`HTTP ${r.status()}: ${r.url()}`); });
    page.on('framenavigated', (f) => { if (f === page.mainFrame()) navigations.push(f.url()); });

    await check("the page loads while the feed runs: no console or page errors, Côte d'Ivoire by default", async () => {
      const res = await page.goto(base + '/', { waitUntil: 'load', timeout: PAGE_TIMEOUT_MS });
      eq(res.status(), 200, 'GET / status');
      await page.waitForFunction(() => document.getElementById('kpi-cases').dataset.value, null, { timeout: 10000 });
      if (haveForecast) await page.waitForFunction(() => document.getElementById('status').dataset.state === 'live', null, { timeout: 10000 });
      await page.evaluate(() => { window.appTestMark = 'same page'; });
      assert(!feedDone, 'the feed had already finished when the page was up: raise the pace\'s bound or lower the pace');
      const got = await shown(page);
      eq(got.title, CIV_SHOWN, 'heading');
      eq(got.picker, CIV, 'picker value');
      eq(got.pickerText, CIV_SHOWN, 'picker label');
      assert((await page.title()).startsWith(CIV_SHOWN), `title: ${await page.title()}`);
      eq(await page.evaluate(() => document.querySelectorAll('.chart canvas').length), 5, 'charts drawn');
      eq(problems.join('\n'), '', 'problems seen by the browser');
      if (!haveForecast) console.log(`     (forecast_by_country is not in the spec: its 404s are not counted as problems; the status says ` +
        `"${await page.textContent('#status-live')}", the notice "${got.notice}")`);
    });

    await check('live data arrives: the shown cases and last day move on while the feed runs, without a reload', async () => {
      const read = () => page.evaluate(() => ({
        cases: Number(document.getElementById('kpi-cases').dataset.value || 0),
        day: (/on (\d{4}-\d\d-\d\d)/.exec(document.getElementById('kpi-new-note').textContent) || [])[1] || '',
      }));
      const a = await read();
      await page.waitForFunction(({ cases, day }) => {
        const d = (/on (\d{4}-\d\d-\d\d)/.exec(document.getElementById('kpi-new-note').textContent) || [])[1] || '';
        return d > day && Number(document.getElementById('kpi-cases').dataset.value || 0) > cases;
      }, a, { timeout: PAGE_TIMEOUT_MS });
      const b = await read();
      assert(!feedDone, `the feed finished before the page was seen moving (it showed ${a.day} then ${b.day})`);
      await page.screenshot({ path: join(OUT, 'app-live.png'), fullPage: true });
      const shotLive = !feedDone;
      await page.waitForTimeout(1500);
      const c = await read();
      console.log(`     (shown: ${a.day || 'no day'} ${fmtInt.format(a.cases)} cases -> ${b.day} ${fmtInt.format(b.cases)} -> ` +
        `${c.day} ${fmtInt.format(c.cases)} 1.5 s later; out/app-live.png taken ${shotLive ? 'while the feed ran' : 'just after the feed ended'})`);
      assert(c.day > b.day || c.day === LAST_DAY, `the last day shown did not move in 1.5 s: ${b.day} then ${c.day}`);
      assert(c.cases >= b.cases, `the cases shown went down: ${b.cases} then ${c.cases}`);
      eq(await page.evaluate(() => window.appTestMark), 'same page', 'the page was not reloaded');
      eq(navigations.length, 1, `navigations (${navigations.join(', ')})`);
    });

    let civ = null;
    await check(`after the feed: the page shows Côte d'Ivoire's ${fmtInt.format(CIV_CASES)} cases and ${CIV_DEATHS} deaths, as totals_by_country`, async () => {
      // The view reaches the last day, then the demo says every view and generator caught up.
      const deadline = t1 + FEED_TIMEOUT_MS;
      let row = null;
      while (Date.now() < deadline) {
        row = (await getView(base, 'totals_by_country', { country: CIV })).rows[0];
        if (row && row.last_day === LAST_DAY) break;
        await new Promise((r) => setTimeout(r, 250));
      }
      eq(row && row.last_day, LAST_DAY, 'totals_by_country last_day');
      const m = await fedAt;
      console.log(`     (second run: the days from ${stoppedAt} on in, views and generators caught up ${m[1]} s after its start; ` +
        `${((Date.now() - t0) / 1000).toFixed(1)} s into the test)`);
      row = (await getView(base, 'totals_by_country', { country: CIV })).rows[0];
      eq(row.cases, CIV_CASES, 'totals_by_country cases (the raw data)');
      eq(row.deaths, CIV_DEATHS, 'totals_by_country deaths (the raw data)');
      eq(row.first_case_day, '2020-03-11', 'totals_by_country first_case_day');
      civ = await compareCountry(page, base, CIV, CIV_SHOWN);
      eq(civ.got.cases.text, '88,263', 'total cases as shown');
      eq(civ.got.deaths.text, '834', 'total deaths as shown');
      eq(civ.got.cases.note, 'since 2020-03-11', 'first case');
      const cells = await page.$eval(`#world tbody tr[data-country="Cote d'Ivoire"]`, (tr) => Array.from(tr.cells).map((c) => c.textContent));
      eq(cells.join('|'), [CIV_SHOWN, '88,263', '834', fmt2.format(100 * CIV_DEATHS / CIV_CASES), '2020-03-11', LAST_DAY].join('|'), 'the world table row');
    });

    await check('while the feed ran, the page followed the views closely (each day shown within 10 s of the view having it)', async () => {
      await sampling;
      const pageTimeline = await page.evaluate(() => window.appTestTimeline);
      const firstSeen = (tl) => {   // day -> the first time it (or a later day) was seen
        const out = new Map();
        for (const [t, d] of tl) if (!out.has(d)) out.set(d, t);
        return out;
      };
      const viewDays = firstSeen(viewTimeline);
      const pageStart = pageTimeline.length ? pageTimeline[0][0] : Infinity;
      const lags = [];
      for (const [d, tv] of viewDays) {
        if (tv < pageStart) continue;   // before the page showed anything
        const p = pageTimeline.find(([, pd]) => pd >= d);
        lags.push([d, p ? p[0] - tv : Infinity]);
      }
      const pageDays = new Set(pageTimeline.map(([, d]) => d));
      assert(lags.length >= 5, `only ${lags.length} days arrived while the page was open (pace ${PACE}, from ${stoppedAt})`);
      const ms = lags.map(([, l]) => l).sort((a, b) => a - b);
      const worst = lags.reduce((w, x) => (x[1] > w[1] ? x : w));
      console.log(`     (${lags.length} days arrived while the page was open; the page showed ${pageDays.size} of them; ` +
        `lag behind the view: median ${ms[ms.length >> 1]} ms, worst ${worst[1]} ms on ${worst[0]})`);
      assert(worst[1] <= MAX_LAG_MS, `the page showed ${worst[0]} ${worst[1]} ms after the view had it (at most ${MAX_LAG_MS} ms)`);
      eq(pageTimeline[pageTimeline.length - 1][1], LAST_DAY, 'the last day the page showed');
    });

    await check("the Rt shown for Côte d'Ivoire is rt_by_country's latest row (median and 95 % interval)", async () => {
      assert(civ, 'no figures (the check above failed)');
      eq(civ.want.rt.day, LAST_DAY, 'rt_by_country latest day');
      compareRt(civ.got, civ.want, CIV_SHOWN);
    });

    const fcName = "the forecast shown for Côte d'Ivoire is forecast_by_country's latest, for the day after the last report";
    if (haveForecast) {
      await check(fcName, async () => {
        assert(civ, 'no figures (the check above failed)');
        compareForecast(civ.got, civ.want, CIV_SHOWN);
      });
    } else if (!process.env.PAYI_APP_DIR) {
      await check(fcName, async () => { throw new Error('examples/covid/covid.payi has no forecast_by_country view'); });
    } else {   // another app, without forecasts: the page must still be live (the view is optional)
      console.log(`SKIP ${fcName}: ${APP} has no forecast_by_country view; the page shows "${civ?.got.fc.note}"`);
    }

    await check('screenshot after the feed (out/app.png, 1280 px wide, full page)', async () => {
      await page.evaluate(() => window.scrollTo(0, 0));
      await page.waitForTimeout(500);
      await page.screenshot({ path: join(OUT, 'app.png'), fullPage: true });
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert(overflow <= 1, `the page is ${overflow}px wider than the window`);
    });

    await check('switching country: the picker (Ghana) and the world table (US) show that country\'s rows', async () => {
      await page.selectOption('#country', 'Ghana');
      const gha = await compareCountry(page, base, 'Ghana', 'Ghana');
      compareRt(gha.got, gha.want, 'Ghana');
      if (haveForecast) compareForecast(gha.got, gha.want, 'Ghana');
      assert(page.url().endsWith('#country=Ghana'), `the URL keeps the country: ${page.url()}`);
      await page.click('#world tbody button[data-country="US"]');
      const us = await compareCountry(page, base, 'US', 'United States');
      compareRt(us.got, us.want, 'United States');
      if (haveForecast) compareForecast(us.got, us.want, 'United States');
      await page.evaluate(() => window.scrollTo(0, 0));
      await page.waitForTimeout(500);
      await page.screenshot({ path: join(OUT, 'app-us.png'), fullPage: true });
      await page.selectOption('#country', CIV);
      await compareCountry(page, base, CIV, CIV_SHOWN);
    });

    await check('the world table holds every row of totals_by_country and sorts by each heading', async () => {
      const totals = (await getView(base, 'totals_by_country', { limit: 100000 })).rows;
      const col = (i) => page.$$eval(`#world tbody tr > :nth-child(${i})`, (cells) => cells.map((c) => c.textContent));
      const sortBy = async (key, dir) => {
        await page.click(`#world th[data-key="${key}"] button`);
        await page.waitForFunction(({ key, dir }) => document.querySelector(`#world th[data-key="${key}"]`).getAttribute('aria-sort') === dir,
          { key, dir }, { timeout: 5000 });
      };
      eq(await page.textContent('#world-count'), `${totals.length} of ${totals.length} countries`, 'count');
      eq((await page.$$eval('#world tbody tr', (trs) => trs.map((tr) => tr.dataset.country))).sort().join('|'),
        totals.map((r) => r.country).sort().join('|'), 'the countries listed');
      const num = (xs) => xs.map((r) => fmtInt.format(r));
      eq((await col(2)).join('|'), num(totals.map((r) => r.cases).sort((a, b) => b - a)).join('|'), 'default order: cases, descending');
      const before = await col(1);
      await sortBy('country', 'ascending');
      const names = await col(1);
      assert(names.join('|') !== before.join('|'), 'the order did not change');
      for (let i = 1; i < names.length; i++)
        assert(names[i - 1].localeCompare(names[i], 'en') <= 0, `by name: ${names[i - 1]} before ${names[i]}`);
      await sortBy('deaths', 'descending');
      eq((await col(3)).join('|'), num(totals.map((r) => r.deaths).sort((a, b) => b - a)).join('|'), 'deaths, descending');
      await sortBy('deaths', 'ascending');
      eq((await col(3)).join('|'), num(totals.map((r) => r.deaths).sort((a, b) => a - b)).join('|'), 'deaths, ascending');
      await sortBy('cfr', 'descending');
      const cfr = totals.map((r) => (r.cases >= 100 ? (100 * r.deaths) / r.cases : null));   // the page's CFR_MIN_CASES
      const cfrs = [...cfr.filter((x) => x !== null).sort((a, b) => b - a).map((x) => fmt2.format(x)), ...cfr.filter((x) => x === null).map(() => '–')];
      eq((await col(4)).join('|'), cfrs.join('|'), 'deaths per 100 cases, descending, missing last');
      await sortBy('first_case_day', 'ascending');
      const firsts = await col(5);
      const want = totals.map((r) => r.first_case_day).filter(Boolean).sort();
      eq(firsts.slice(0, want.length).join('|'), want.join('|'), 'first case, ascending');
      await sortBy('cases', 'descending');   // back to the default
    });

    await check('no console errors, page errors or failed requests during the whole run', async () => {
      eq(problems.join('\n'), '', 'problems seen by the browser');
    });
    watching = false;
  } catch (e) {
    results.push(false);
    console.log(`FAIL setting up: ${e && e.stack ? e.stack : e}`);
    if (payi) console.log(payi.log().split('\n').filter((l) => !/\(day \d+ of/.test(l)).join('\n'));
  } finally {
    await cleanup();
    clearTimeout(watchdog);
  }
  console.log(`screenshots: ${join(OUT, 'app-live.png')}, ${join(OUT, 'app.png')}, ${join(OUT, 'app-us.png')}; ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  process.exit(summary());
}

main();
