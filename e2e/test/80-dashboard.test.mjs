// The dashboard in a real browser: Debian's Chromium, headless, driven by
// puppeteer-core (which downloads nothing). This file starts its own proxy
// and simulators, so it can kill and drain them without disturbing the
// other tests. It fails on any console error, checks that names a backend
// chose are shown as text and never run, and saves docs/dashboard.png.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, existsSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { freePorts, processes, startProxy, until } from '../lib/procs.mjs';
import puppeteer from 'puppeteer-core';

const root = process.cwd();
const runDir = path.join(root, 'e2e', '.run', 'dashboard');
const set = processes(root, runDir);
const { procs, start, stopAll } = set;
const chromium = process.env.CHROMIUM_PATH ?? ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find(existsSync);
const screenshot = process.env.E2E_SCREENSHOT ?? path.join(root, 'docs', 'dashboard.png');

// Names a backend might send: markup that must stay text.
// (tagged, so Ollama's ":latest" is not added)
const evilA = '<img src=x onerror=window.__pwned=1>:v1';
const evilB = '<script>window.__pwned=2</script>:v1';

let base, adminURL, page, browser;
const consoleErrors = [];




const cardStatus = (name) => page.evaluate((n) => {
  const card = [...document.querySelectorAll('article.card')].find((c) => c.dataset.endpoint === n);
  return card ? card.dataset.status : null;
}, name);

before(async () => {
  assert.ok(chromium, 'Chromium is required: apt-get install chromium (or set CHROMIUM_PATH)');
  mkdirSync(runDir, { recursive: true });
  const [port, admin, pa, pb, pc] = await freePorts(5);
  const pace = 'ttft=20ms;tps=100;tokens=8';
  start('sim-a', 'bin/olla-sim', ['-sim', `ollama@127.0.0.1:${pa}=llama3.2:latest,${evilA};name=dash-a;${pace}`]);
  start('sim-b', 'bin/olla-sim', ['-sim', `ollama@127.0.0.1:${pb}=llama3.2:latest,${evilB};name=dash-b;${pace}`]);
  start('sim-c', 'bin/olla-sim', ['-sim', `lmstudio@127.0.0.1:${pc}=qwen2.5-7b-instruct;name=dash-c;${pace}`]);
  ({ base, adminURL } = startProxy(set, runDir, { port, admin }, [['dash-a', pa, 'ollama'], ['dash-b', pb, 'ollama'], ['dash-c', pc, 'lm-studio']]));
  await until('three routable endpoints', async () => {
    const res = await fetch(`${base}/internal/status/endpoints`);
    const body = await res.json();
    return body.routable_count === 3 && body.endpoints.every((e) => e.model_count > 0);
  });
  // some traffic for the request log and the charts
  for (let i = 0; i < 6; i++) {
    const res = await fetch(`${base}/olla/ollama/api/chat`, {
      method: 'POST',
      body: JSON.stringify({ model: 'llama3.2', stream: false, messages: [{ role: 'user', content: 'hello' }] }),
    });
    assert.equal(res.status, 200);
    await res.text();
  }
  const res = await fetch(`${base}/olla/lmstudio/v1/chat/completions`, {
    method: 'POST',
    body: JSON.stringify({ model: 'qwen2.5-7b-instruct', messages: [{ role: 'user', content: 'hi' }] }),
  });
  await res.text();

  browser = await puppeteer.launch({
    executablePath: chromium,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
  page = await browser.newPage();
  page.on('console', (msg) => { if (msg.type() === 'error') consoleErrors.push(msg.text()); });
  page.on('pageerror', (err) => consoleErrors.push(String(err)));
  page.on('dialog', (d) => { consoleErrors.push(`unexpected dialog: ${d.message()}`); d.dismiss(); });
  await page.setViewport({ width: 1280, height: 900 });
  const resp = await page.goto(`${base}/internal/ui`, { waitUntil: 'load' });
  assert.equal(resp.status(), 200);
  assert.match(resp.headers()['content-security-policy'] ?? '', /script-src 'self'/);
  assert.equal(resp.headers()['x-content-type-options'], 'nosniff');
});

after(async () => {
  await browser?.close();
  stopAll();
});

test('every endpoint and model appears', async () => {
  for (const name of ['dash-a', 'dash-b', 'dash-c']) {
    await until(`card ${name}`, async () => (await cardStatus(name)) === 'healthy');
  }
  const models = await until('the model table', async () => {
    const ids = await page.$$eval('#models tbody tr', (rows) => rows.map((r) => r.dataset.model));
    return ids.length >= 4 ? ids : null;
  });
  for (const m of ['llama3.2:latest', 'qwen2.5-7b-instruct', evilA, evilB]) {
    assert.ok(models.includes(m), `model ${m} missing from ${JSON.stringify(models)}`);
  }
  const rows = await until('the request log', async () => {
    const n = await page.$$eval('#recent tbody tr', (r) => r.length);
    return n >= 7 ? n : null;
  });
  assert.ok(rows >= 7);
});

test('names from backends are text, never markup', async () => {
  const state = await page.evaluate((a, b) => ({
    pwned: window.__pwned,
    images: document.querySelectorAll('img').length,
    scripts: [...document.querySelectorAll('script')].map((s) => s.getAttribute('src')),
    textA: document.body.textContent.includes(a),
    textB: document.body.textContent.includes(b),
  }), evilA, evilB);
  assert.equal(state.pwned, undefined, 'an injected name ran as script');
  assert.equal(state.images, 0, 'an injected <img> became an element');
  assert.deepEqual(state.scripts, ['/internal/ui/app.js']);
  assert.ok(state.textA && state.textB, 'the hostile names should show as plain text');
});

test('a killed backend shows down within seconds', async () => {
  procs[2].kill('SIGKILL'); // dash-c
  const st = await until('dash-c shown down', async () => {
    const s = await cardStatus('dash-c');
    return s && s !== 'healthy' ? s : null;
  }, 15000);
  assert.notEqual(st, 'healthy');
});

// adminPost calls Caddy's admin API the way curl does: fetch() sends
// Sec-Fetch-Mode, which makes Caddy demand an allowed Origin.
function adminPost(p) {
  return new Promise((resolve, reject) => {
    const req = http.request(`${adminURL}${p}`, { method: 'POST' }, (res) => {
      let body = '';
      res.on('data', (c) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

test('an endpoint drained through the admin API shows drained', async () => {
  const res = await adminPost('/olla/endpoints/dash-b/drain');
  assert.equal(res.status, 200, res.body);
  await until('dash-b shown drained', async () => (await cardStatus('dash-b')) === 'drained', 15000);
});

test('usable on a phone-sized screen', async () => {
  await page.setViewport({ width: 375, height: 740, isMobile: true });
  await new Promise((r) => setTimeout(r, 300));
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 1, `the page is ${overflow}px wider than a phone's screen`);
  await page.setViewport({ width: 1280, height: 900 });
});

test('screenshot, and no console errors', async () => {
  mkdirSync(path.dirname(screenshot), { recursive: true });
  await new Promise((r) => setTimeout(r, 2500)); // one more poll, so the charts have the drain and the kill
  await page.screenshot({ path: screenshot, fullPage: true });
  assert.deepEqual(consoleErrors, []);
});
