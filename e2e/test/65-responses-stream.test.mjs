// The openai SDK's own Responses stream helper, client.responses.stream(),
// through the proxy: against a backend with no /v1/responses (the generic
// OpenAI-compatible simulator, so the proxy translates from chat
// completions) it yields every event, in the order a native server sends
// them (the Ollama simulator serves the Responses API natively), and its
// final response carries the streamed text. A backend stream that breaks
// half-way ends in response.failed, never response.completed. This file
// starts its own proxy and simulators.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import OpenAI from 'openai';
import { allRoutable, freePorts, processes, startProxy, stopped } from '../lib/procs.mjs';

const root = process.cwd();
const runDir = path.join(root, 'e2e', '.run', 'responses');
const set = processes(root, runDir);
const TOKENS = 5;
const NATIVE = 'llama3.2:latest'; // the Ollama simulator: Responses natively
const TRANSLATED = 'gpt-sim-mini'; // the generic OpenAI-compatible one: chat completions only

let base;
let simURL;

before(async () => {
  mkdirSync(runDir, { recursive: true });
  const [port, admin, pn, po] = await freePorts(4);
  const pace = `ttft=20ms;tps=200;tokens=${TOKENS}`;
  set.start('sim-native', 'bin/olla-sim', ['-sim', `ollama@127.0.0.1:${pn}=${NATIVE};name=native;${pace}`]);
  set.start('sim-openai', 'bin/olla-sim', ['-sim', `openai@127.0.0.1:${po}=${TRANSLATED};name=openai;${pace}`]);
  simURL = { native: `http://127.0.0.1:${pn}`, openai: `http://127.0.0.1:${po}` };
  ({ base } = startProxy(set, runDir, { port, admin }, [['native', pn, 'ollama'], ['openai', po, 'openai']]));
  await allRoutable(base, 2);
});

after(() => stopped(set));

// The client as a user writes it, no retries (what it sees came through
// the proxy once), with a fetch that keeps the answer's X-Olla-Mode.
function client(seen) {
  return new OpenAI({
    baseURL: `${base}/olla/openai/v1`, apiKey: 'olla-local', maxRetries: 0, timeout: 30_000,
    fetch: async (input, init) => {
      const res = await fetch(input, init);
      seen.mode = res.headers.get('x-olla-mode');
      return res;
    },
  });
}

async function simControl(which, route, body) {
  const res = await fetch(`${simURL[which]}${route}`, body === undefined ? {} : { method: 'POST', body: JSON.stringify(body) });
  assert.equal(res.status, 200, `${route} on the ${which} simulator: ${res.status}`);
  return res.json();
}

// streamed runs responses.stream() for model and collects what the SDK
// gives: every event in order (its async iterator), the text of the
// output_text.delta helper events, the final response or the error the
// helper ends with, and the mode header the proxy answered with.
async function streamed(model) {
  const seen = {};
  const stream = client(seen).responses.stream({ model, instructions: 'Be brief.', input: 'Say hello.' });
  const events = [];
  let deltas = '';
  stream.on('response.output_text.delta', (e) => { deltas += e.delta; });
  let failure;
  try {
    for await (const e of stream) events.push(e);
  } catch (err) {
    failure = err;
  }
  let final;
  try {
    final = await stream.finalResponse();
  } catch (err) {
    failure ??= err;
  }
  return { events, types: events.map((e) => e.type), deltas, final, failure, mode: seen.mode };
}

// The order a Responses stream of one text message follows.
function assertTextStreamOrder(types, label) {
  const deltas = types.filter((t) => t === 'response.output_text.delta').length;
  assert.ok(deltas >= 1, `${label}: no response.output_text.delta in ${types.join(' ')}`);
  const want = [
    'response.created', 'response.in_progress', 'response.output_item.added', 'response.content_part.added',
    ...Array(deltas).fill('response.output_text.delta'),
    'response.output_text.done', 'response.content_part.done', 'response.output_item.done', 'response.completed',
  ];
  assert.deepEqual(types, want, `${label}: events out of order`);
}

describe('openai SDK responses.stream() through /olla/openai/v1', () => {
  for (const { model, mode, sim, apiPath } of [
    { model: NATIVE, mode: 'passthrough', sim: 'native', apiPath: 'POST /v1/responses' },
    { model: TRANSLATED, mode: 'translation', sim: 'openai', apiPath: 'POST /v1/chat/completions' },
  ]) {
    test(`every event in order (${mode})`, async () => {
      const before = (await simControl(sim, '/_sim/stats')).by_path?.[apiPath] ?? 0;
      const r = await streamed(model);
      assert.equal(r.failure, undefined, `the stream failed: ${r.failure}`);
      assert.equal(r.mode, mode, 'X-Olla-Mode');
      assertTextStreamOrder(r.types, mode);
      assert.deepEqual(r.events.map((e) => e.sequence_number), r.events.map((_, i) => i), 'sequence numbers');
      // one item, one part, the same id throughout
      const added = r.events.find((e) => e.type === 'response.output_item.added');
      assert.ok(r.events.filter((e) => e.item_id !== undefined).every((e) => e.item_id === added.item.id), 'item ids differ');
      // the helper's deltas, the done event, the item and the final response agree
      assert.equal(r.deltas.trim().split(/\s+/).length, TOKENS, `deltas ${JSON.stringify(r.deltas)}`);
      assert.equal(r.events.find((e) => e.type === 'response.output_text.done').text, r.deltas);
      assert.equal(r.final.status, 'completed');
      assert.equal(r.final.model, model);
      assert.equal(r.final.output_text, r.deltas);
      assert.equal(r.final.output[0].content[0].text, r.deltas);
      assert.ok(((await simControl(sim, '/_sim/stats')).by_path?.[apiPath] ?? 0) > before, `the ${sim} backend was not asked (${apiPath})`);
    });
  }

  test('the translated backend was never sent /v1/responses', async () => {
    assert.equal((await simControl('openai', '/_sim/stats')).by_path?.['POST /v1/responses'] ?? 0, 0);
  });

  test('a backend stream cut mid-way ends in response.failed, never response.completed (translation)', async () => {
    // the chat-completions stream closes abruptly after its first 3 events
    // (the role and two words), once
    await simControl('openai', '/_sim/fault', { mode: 'drop_mid_stream', after_chunks: 3, path: '/v1/chat/completions', times: 1 });
    const r = await streamed(TRANSLATED);
    assert.equal(r.mode, 'translation', 'X-Olla-Mode');
    assert.ok(!r.types.includes('response.completed'), `response.completed after a broken stream: ${r.types.join(' ')}`);
    assert.equal(r.types.at(-1), 'response.failed', `events ${r.types.join(' ')}`);
    assert.deepEqual(r.types.slice(0, 4),
      ['response.created', 'response.in_progress', 'response.output_item.added', 'response.content_part.added']);
    assert.ok(r.types.includes('response.output_text.delta'), 'the words before the cut were not streamed');
    const failed = r.events.at(-1);
    assert.equal(failed.response.status, 'failed');
    assert.match(failed.response.error.message, /broke|ended/, 'the failure names the broken stream');
    assert.deepEqual(r.events.map((e) => e.sequence_number), r.events.map((_, i) => i), 'sequence numbers');
    // what the SDK hands back is the failed response, not a completed one
    assert.equal(r.failure, undefined, `the SDK threw: ${r.failure}`);
    assert.equal(r.final.status, 'failed', JSON.stringify(r.final));
    assert.equal(r.final.error.message, failed.response.error.message);
    assert.equal((await simControl('openai', '/_sim/fault')).times ?? 0, 0, 'the fault was not used up');

    // and the next stream is whole again
    assertTextStreamOrder((await streamed(TRANSLATED)).types, 'after the fault');
  });
});
