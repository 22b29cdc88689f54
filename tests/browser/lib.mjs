// Helpers shared by the browser tests (dashboard.test.mjs, app.test.mjs):
// where things are, starting and stopping payi, reading views, Chromium,
// the number formats the page uses, and a tiny check harness that ends
// with "N passed, N failed".
import { spawn } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const HERE = dirname(fileURLToPath(import.meta.url));
export const REPO = resolve(HERE, '..', '..');
export const PAYI_BIN = process.env.PAYI_BIN || join(REPO, 'build', 'payi');
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
export const OUT = join(HERE, 'out');

// ---------------------------------------------------------------- payi

/* Start payi with args (which must make it print "listening on URL");
 * resolves to { proc, url, log(), waitLog(re, ms), exited }.  env is added
 * to the process's environment. */
export function startPayi(args, { env = {}, timeoutMs = 15000 } = {}) {
  return new Promise((resolveStart, reject) => {
    const proc = spawn(PAYI_BIN, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    let seen = '';
    let started = false;
    const waiters = new Set();
    const exited = new Promise((r) => proc.once('exit', (code, signal) => r({ code, signal })));
    const handle = {
      proc, url: null, exited,
      log: () => seen,
      /* Resolves with the match once the output matches re; rejects after ms. */
      waitLog(re, ms) {
        const m = re.exec(seen);
        if (m) return Promise.resolve(m);
        return new Promise((res, rej) => {
          const w = { re, res, rej, timer: null };
          w.timer = setTimeout(() => { waiters.delete(w); rej(new Error(`payi did not print ${re} in ${ms} ms`)); }, ms);
          waiters.add(w);
        });
      },
    };
    const timer = setTimeout(() => { if (!started) reject(new Error(`payi did not start in ${timeoutMs} ms:\n${seen}`)); }, timeoutMs);
    const onData = (chunk) => {
      seen += chunk.toString();
      for (const w of waiters) {
        const m = w.re.exec(seen);
        if (m) { clearTimeout(w.timer); waiters.delete(w); w.res(m); }
      }
      const m = /listening on (http:\/\/[^\s]+)/.exec(seen);
      if (m && !started) { started = true; clearTimeout(timer); handle.url = m[1]; resolveStart(handle); }
    };
    proc.stdout.on('data', onData);
    proc.stderr.on('data', onData);
    proc.once('error', (e) => { clearTimeout(timer); if (!started) reject(e); });
    proc.once('exit', (code, signal) => {
      clearTimeout(timer);
      for (const w of waiters) { clearTimeout(w.timer); w.rej(new Error(`payi exited (${code ?? signal}) before printing ${w.re}`)); }
      waiters.clear();
      if (!started) reject(new Error(`payi exited (${code ?? signal}):\n${seen}`));
    });
  });
}

/* Stop payi: signal (SIGINT by default), then SIGKILL after ms. */
export async function stopPayi(payi, signal = 'SIGINT', ms = 5000) {
  if (!payi || payi.proc.exitCode !== null || payi.proc.signalCode !== null) return;
  payi.proc.kill(signal);
  let timer;
  const killed = new Promise((r) => { timer = setTimeout(() => { payi.proc.kill('SIGKILL'); r(); }, ms); });
  await Promise.race([payi.exited, killed]);
  clearTimeout(timer);
  await Promise.race([payi.exited, new Promise((r) => setTimeout(r, 2000))]);
}

export async function getView(base, name, params = {}, timeoutMs = 15000) {
  const q = Object.entries(params).map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&');
  const res = await fetch(`${base}/views/${name}${q ? '?' + q : ''}`, { signal: AbortSignal.timeout(timeoutMs) });
  const body = await res.json();
  if (!res.ok) {
    const e = new Error(`GET /views/${name}: ${JSON.stringify(body)}`);
    e.status = res.status;
    throw e;
  }
  return body;
}

// ---------------------------------------------------------------- Chromium

/* A change stream the page closed itself (the tab hidden, or the country
 * switched: per-country streams are filtered by country) ends as an
 * aborted request; that is not a failure. */
export function closedChangeStream(request) {
  return /\/views\/[^/]+\/changes(\?|$)/.test(new URL(request.url()).pathname + new URL(request.url()).search)
    && request.failure()?.errorText === 'net::ERR_ABORTED';
}

export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update'];

export function launchBrowser() {
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: 30000 });
}

// ---------------------------------------------------------------- the page's formats

export const fmtInt = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
export const fmt1 = new Intl.NumberFormat('en-US', { minimumFractionDigits: 1, maximumFractionDigits: 1 });
export const fmt2 = new Intl.NumberFormat('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 2 });
/* A forecast of cases, as the page writes it: whole numbers, one decimal below 10. */
export const fmtCases = (v) => fmtInt.format(v);   // forecasts are counts: whole numbers
/* An Rt interval as the page shows it: two decimals, more (up to five)
 * while both ends would read the same. */
export function fmtInterval(lo, hi) {
  for (let d = 2; ; d++) {
    const f = new Intl.NumberFormat('en-US', { minimumFractionDigits: d, maximumFractionDigits: d });
    if (f.format(lo) !== f.format(hi) || d === 5) return `${f.format(lo)}–${f.format(hi)}`;
  }
}

// ---------------------------------------------------------------- a tiny harness

export const results = [];

export async function check(name, fn) {
  const t0 = Date.now();
  try {
    await fn();
    results.push(true);
    console.log(`ok   ${name} (${Date.now() - t0} ms)`);
  } catch (e) {
    results.push(false);
    console.log(`FAIL ${name}: ${e && e.stack ? e.stack.split('\n').slice(0, 4).join('\n     ') : e}`);
  }
}

export function assert(cond, msg) { if (!cond) throw new Error(msg); }

export function eq(actual, expected, what) {
  if (actual !== expected) throw new Error(`${what}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`);
}

/* The closing line; returns the exit status. */
export function summary() {
  const passed = results.filter(Boolean).length, failed = results.length - passed;
  console.log(`${passed} passed, ${failed} failed`);
  return failed ? 1 : 0;
}
