// The dashboard in a real browser: Debian's Chromium, headless, driven by
// puppeteer-core (which downloads nothing). This file starts its own proxy
// and simulators, so it can kill and drain them without disturbing the
// other tests. It fails on any console error, checks that names a backend
// chose are shown as text and never run, and saves a screenshot: in
// e2e/.run/dashboard/ (ignored), or where E2E_SCREENSHOT says (`make
// e2e-screenshot` updates docs/dashboard.png).
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
const screenshot = process.env.E2E_SCREENSHOT || path.join(runDir, 'dashboard.png');

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
  // adaptive, as the README ships it: prefix affinity and its panel are on
  ({ base, adminURL } = startProxy(set, runDir, { port, admin }, [['dash-a', pa, 'ollama'], ['dash-b', pb, 'ollama'], ['dash-c', pc, 'lm-studio']],
    '\t\tload_balancer adaptive'));
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
  // conversations without a session id, three turns each: the prefix
  // index learns where each is held, and later turns find it there
  const system = 'You are a careful assistant. '.repeat(30);
  for (let c = 0; c < 4; c++) {
    const messages = [{ role: 'system', content: system }, { role: 'user', content: `conversation ${c} asks `.repeat(30) }];
    for (let turn = 0; turn < 3; turn++) {
      const r = await fetch(`${base}/olla/ollama/api/chat`, {
        method: 'POST',
        body: JSON.stringify({ model: 'llama3.2', stream: false, messages }),
      });
      assert.equal(r.status, 200);
      const answer = await r.json();
      messages.push(answer.message, { role: 'user', content: `and turn ${turn + 1}?` });
    }
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

test('the prefix cache panel shows each index and its hit ratio', async () => {
  const rows = await until('the prefix panel', async () => {
    const got = await page.evaluate(() => {
      const panel = document.getElementById('prefix-panel');
      if (!panel || panel.hidden) return null;
      return [...document.querySelectorAll('#prefix tbody tr')].map((r) => ({
        endpoint: r.dataset.endpoint,
        index: r.querySelector('td.index').textContent,
        meter: Number(r.querySelector('td.index meter').value),
        hit: r.querySelector('td.hit-ratio').textContent,
        visible: r.getBoundingClientRect().height > 0,
      }));
    });
    return got && got.length === 3 ? got : null;
  });
  assert.deepEqual(rows.map((r) => r.endpoint), ['dash-a', 'dash-b', 'dash-c']);
  for (const r of rows) assert.ok(r.visible, `row ${r.endpoint} is not visible`);
  // the Ollamas served the conversations: their indexes hold blocks, and
  // of the 12 turns the 8 later ones were held where they went
  const ollamas = rows.filter((r) => r.endpoint !== 'dash-c');
  assert.ok(ollamas.some((r) => r.meter > 0), `no index holds blocks: ${JSON.stringify(rows)}`);
  for (const r of ollamas) assert.match(r.index, /^ ?\d+ of 65536 blocks \(\d+%\)$/);
  const held = ollamas.reduce((n, r) => n + Number((r.hit.match(/\((\d+) of/) || [0, 0])[1]), 0);
  assert.ok(held >= 8, `held requests ${held}, want 8 or more: ${JSON.stringify(rows)}`);
  // the numbers are the server's
  const data = await (await fetch(`${base}/internal/ui/data`)).json();
  for (const p of data.prefix) {
    const r = rows.find((x) => x.endpoint === p.endpoint);
    assert.equal(r.meter, p.blocks, `${p.endpoint}: the meter shows ${r.meter}, the data ${p.blocks}`);
  }
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
