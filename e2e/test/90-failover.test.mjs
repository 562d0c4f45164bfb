// Failover: ollama-a and ollama-b serve the same models behind round-robin.
// ollama-b's process is killed between requests; every request after that must
// still succeed, answered by ollama-a, because the proxy fails over before the
// first byte. Runs last: ollama-b stays dead.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { BACKENDS, MODELS, OPENAI_ROUTES, SIM, USER, getJSON, openai, ollama, sleep, words } from '../lib/env.mjs';

const MODEL = MODELS.ollama.chat;
const A = BACKENDS.ollamaA.name;
const B = BACKENDS.ollamaB.name;

// One request of each kind the clients make; each resolves to the name of
// the endpoint that answered (X-Olla-Endpoint) after checking the answer.
const requests = {
  async 'Ollama chat'() {
    const client = ollama();
    const res = await client.chat({ model: MODEL, messages: USER, stream: false });
    assert.equal(words(res.message.content), SIM.tokens);
    assert.equal(res.done, true);
    return client.lastHeaders().get('x-olla-endpoint');
  },
  async 'Ollama chat, streamed'() {
    const client = ollama();
    const stream = await client.chat({ model: MODEL, messages: USER, stream: true });
    let text = '';
    let last = null;
    for await (const part of stream) {
      text += part.message?.content ?? '';
      last = part;
    }
    assert.equal(words(text), SIM.tokens);
    assert.equal(last?.done, true);
    return client.lastHeaders().get('x-olla-endpoint');
  },
  async 'OpenAI chat'() {
    const { data, response } = await openai(OPENAI_ROUTES.openai).chat.completions
      .create({ model: MODEL, messages: USER })
      .withResponse();
    assert.equal(words(data.choices[0].message.content), SIM.tokens);
    return response.headers.get('x-olla-endpoint');
  },
  async 'OpenAI chat, streamed'() {
    const { data: stream, response } = await openai(OPENAI_ROUTES.openai).chat.completions
      .create({ model: MODEL, messages: USER, stream: true })
      .withResponse();
    let text = '';
    let finish = null;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta?.content ?? '';
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    assert.equal(words(text), SIM.tokens);
    assert.equal(finish, 'stop');
    return response.headers.get('x-olla-endpoint');
  },
  async 'Ollama embed'() {
    const client = ollama();
    const res = await client.embed({ model: MODELS.ollama.embed, input: 'x' });
    assert.equal(res.embeddings[0].length, SIM.dims);
    return client.lastHeaders().get('x-olla-endpoint');
  },
};
const kinds = Object.keys(requests);

async function endpointStatus(name) {
  const { endpoints } = await getJSON('/internal/status/endpoints');
  const e = endpoints.find((x) => x.name === name);
  assert.ok(e, `${name} in /internal/status/endpoints`);
  return e;
}

/** Resolves once nothing accepts connections on url's port any more. */
async function refused(url, within = 30000) {
  const { hostname, port } = new URL(url);
  const deadline = Date.now() + within;
  for (;;) {
    const accepted = await new Promise((resolve) => {
      const sock = net.connect({ host: hostname, port: Number(port) });
      sock.once('connect', () => { sock.destroy(); resolve(true); });
      sock.once('error', () => resolve(false));
    });
    if (!accepted) return;
    if (Date.now() > deadline) assert.fail(`${url} still accepts connections ${within} ms after the kill`);
    await sleep(5);
  }
}

test('round-robin spreads requests over both Ollama backends', async () => {
  const seen = new Set();
  for (let i = 0; i < 4; i++) seen.add(await requests['Ollama chat']());
  assert.deepEqual([...seen].sort(), [A, B]);
});

test(`${B} killed between requests: every later request succeeds on ${A}`, async () => {
  const before = await endpointStatus(B);
  assert.equal(before.routable, true, `${B} is routable before the kill`);

  process.kill(BACKENDS.ollamaB.pid, 'SIGKILL');
  await refused(BACKENDS.ollamaB.url);

  // At once, before any health check can notice: round-robin sends some of
  // these to the dead backend; the proxy must retry them on the survivor.
  const burst = await Promise.allSettled([...kinds, ...kinds].map((k) => requests[k]()));
  burst.forEach((r, i) => {
    const kind = [...kinds, ...kinds][i];
    assert.equal(r.status, 'fulfilled', `${kind} right after the kill: ${r.reason?.stack ?? r.reason}`);
    assert.equal(r.value, A, `${kind} right after the kill was answered by ${A}`);
  });

  // Then one at a time, across the health checks that take ollama-b out.
  for (let i = 0; i < 2 * kinds.length; i++) {
    const kind = kinds[i % kinds.length];
    let who;
    try {
      who = await requests[kind]();
    } catch (err) {
      assert.fail(`${kind} #${i} after the kill failed: ${err?.stack ?? err}`);
    }
    assert.equal(who, A, `${kind} #${i} after the kill was answered by ${A}`);
  }

  // The dead backend really was tried and failed over from; the requests did
  // not just happen to miss it.
  const after = await endpointStatus(B);
  assert.ok(after.failure_count > before.failure_count,
    `${B} failure_count went from ${before.failure_count} to ${after.failure_count}: the proxy never tried the dead backend, so failover was not exercised`);
});

test(`health checks take ${B} out; listings and requests go on`, async () => {
  // a generous deadline: a busy machine stretches the health checks
  const deadline = Date.now() + 30000;
  let st = await endpointStatus(B);
  while (st.routable && Date.now() < deadline) {
    await sleep(100);
    st = await endpointStatus(B);
  }
  assert.equal(st.routable, false, `${B} is no longer routable (status ${st.status}: ${st.reason})`);
  assert.equal((await endpointStatus(A)).routable, true, `${A} is still routable`);

  const { models } = await ollama().list();
  assert.ok(models.some((m) => m.name === MODEL), `${MODEL} is still listed (served by ${A})`);
  const page = await openai(OPENAI_ROUTES.openai).models.list();
  assert.ok(page.data.some((m) => m.id === MODEL), `${MODEL} is still listed on ${OPENAI_ROUTES.openai}`);

  for (const kind of kinds) assert.equal(await requests[kind](), A, kind);
});
