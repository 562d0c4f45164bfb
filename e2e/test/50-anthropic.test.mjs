// The Anthropic Messages API through the official @anthropic-ai/sdk, pointed
// at /olla/anthropic as ANTHROPIC_BASE_URL would point it. This file starts
// its own proxy and simulators (the shared proxy's model lists are pinned by
// other tests): an Ollama simulator, which speaks /v1/messages natively
// (passthrough), and an OpenAI-compatible one, which does not (translation).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { allRoutable, freePorts, processes, startProxy, stopped } from '../lib/procs.mjs';
import Anthropic from '@anthropic-ai/sdk';

const root = process.cwd();
const runDir = path.join(root, 'e2e', '.run', 'anthropic');
const set = processes(root, runDir);
const { start } = set;
const TOKENS = 6;
const NATIVE_MODEL = 'qwen3:8b';
const OPENAI_MODEL = 'gpt-sim-mini';

let base;




before(async () => {
  mkdirSync(runDir, { recursive: true });
  const [port, admin, pn, po] = await freePorts(4);
  const pace = `ttft=20ms;tps=200;tokens=${TOKENS}`;
  start('sim-native', 'bin/olla-sim', ['-sim', `ollama@127.0.0.1:${pn}=${NATIVE_MODEL};name=native;${pace}`]);
  start('sim-openai', 'bin/olla-sim', ['-sim', `openai@127.0.0.1:${po}=${OPENAI_MODEL};name=openai;${pace}`]);
  ({ base } = startProxy(set, runDir, { port, admin }, [['native', pn, 'ollama'], ['openai', po, 'openai']]));
  await allRoutable(base, 2);
});

after(() => stopped(set));

// The client as an Anthropic-API tool would build it from
// ANTHROPIC_BASE_URL=<olla>/olla/anthropic. No retries: what succeeds,
// succeeds through the proxy alone.
function anthropic() {
  return new Anthropic({ baseURL: `${base}/olla/anthropic`, apiKey: 'e2e-unused', maxRetries: 0, timeout: 15_000 });
}

const USER = [{ role: 'user', content: 'Say hello.' }];
const WEATHER = {
  name: 'get_weather',
  description: 'The weather in a city',
  input_schema: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
};

for (const { model, mode, endpoint } of [
  { model: NATIVE_MODEL, mode: 'passthrough', endpoint: 'native' },
  { model: OPENAI_MODEL, mode: 'translation', endpoint: 'openai' },
]) {
  describe(`@anthropic-ai/sdk on /olla/anthropic, ${model} (${mode})`, () => {
    test('messages.create, not streamed', async () => {
      const { data, response } = await anthropic().messages
        .create({ model, max_tokens: 64, messages: USER })
        .withResponse();
      assert.equal(response.status, 200);
      assert.equal(response.headers.get('x-olla-mode'), mode);
      assert.equal(response.headers.get('x-olla-endpoint'), endpoint);
      assert.equal(data.type, 'message');
      assert.equal(data.role, 'assistant');
      assert.equal(data.model, model);
      assert.equal(data.content[0].type, 'text');
      assert.equal(data.content[0].text.trim().split(/\s+/).length, TOKENS, `text: ${data.content[0].text}`);
      assert.equal(data.stop_reason, 'end_turn');
      assert.ok(data.usage.output_tokens > 0, 'usage.output_tokens');
    });

    test('messages.create, streamed: the events in order, then message_stop', async () => {
      const { data: stream, response } = await anthropic().messages
        .create({ model, max_tokens: 64, messages: USER, stream: true })
        .withResponse();
      assert.equal(response.headers.get('x-olla-mode'), mode);
      const types = [];
      let text = '';
      for await (const ev of stream) {
        types.push(ev.type);
        if (ev.type === 'content_block_delta' && ev.delta.type === 'text_delta') text += ev.delta.text;
      }
      const order = types.filter((t) => t !== 'ping');
      assert.equal(order[0], 'message_start');
      assert.equal(order[1], 'content_block_start');
      assert.deepEqual(order.slice(-3), ['content_block_stop', 'message_delta', 'message_stop']);
      assert.equal(order.filter((t) => t === 'content_block_delta').length, TOKENS);
      assert.equal(text.trim().split(/\s+/).length, TOKENS, `text: ${text}`);
    });

    test('a tool-use round trip', async () => {
      const client = anthropic();
      const first = await client.messages.create({
        model, max_tokens: 64, tools: [WEATHER], tool_choice: { type: 'tool', name: 'get_weather' },
        messages: [{ role: 'user', content: 'What is the weather in Paris?' }],
      });
      assert.equal(first.stop_reason, 'tool_use');
      const call = first.content.find((b) => b.type === 'tool_use');
      assert.ok(call, `a tool_use block in ${JSON.stringify(first.content)}`);
      assert.equal(call.name, 'get_weather');
      assert.match(call.id, /\S/);
      assert.equal(typeof call.input, 'object');

      const second = await client.messages.create({
        model, max_tokens: 64, tools: [WEATHER],
        messages: [
          { role: 'user', content: 'What is the weather in Paris?' },
          { role: 'assistant', content: first.content },
          { role: 'user', content: [{ type: 'tool_result', tool_use_id: call.id, content: 'Sunny, 21 C' }] },
        ],
      });
      assert.equal(second.stop_reason, 'end_turn');
      assert.equal(second.content[0].type, 'text');
      assert.match(second.content[0].text, /\S/);
    });

    test('messages.countTokens', async () => {
      const { data, response } = await anthropic().messages
        .countTokens({ model, messages: [{ role: 'user', content: 'How many tokens is this sentence?' }] })
        .withResponse();
      assert.equal(response.status, 200);
      assert.ok(data.input_tokens > 0, `input_tokens ${data.input_tokens}`);
      // neither simulator counts natively (only llama.cpp does): an estimate, labelled
      assert.equal(response.headers.get('x-olla-token-count'), 'estimate');
    });

    test('an unknown model raises the typed NotFoundError', async () => {
      await assert.rejects(
        anthropic().messages.create({ model: `${model}-nope`, max_tokens: 8, messages: USER }),
        (err) => {
          assert.ok(err instanceof Anthropic.NotFoundError, `${err?.constructor?.name}: ${err?.message}`);
          assert.equal(err.status, 404);
          assert.equal(err.error?.error?.type, 'not_found_error');
          assert.match(err.requestID ?? '', /\S/, 'request-id');
          return true;
        },
      );
    });
  });
}

test('models.list in Anthropic shape spans both backends', async () => {
  const ids = [];
  for await (const m of anthropic().models.list()) {
    assert.equal(m.type, 'model');
    ids.push(m.id);
  }
  assert.deepEqual(ids.sort(), [NATIVE_MODEL, OPENAI_MODEL].sort());
});

test('/internal/stats/translators counted both modes', async () => {
  const res = await fetch(`${base}/internal/stats/translators`);
  const body = await res.json();
  const [t] = body.translators;
  assert.equal(t.translator_name, 'anthropic');
  assert.ok(t.passthrough_requests >= 4, `passthrough_requests ${t.passthrough_requests}`);
  assert.ok(t.translation_requests >= 4, `translation_requests ${t.translation_requests}`);
  assert.equal(t.fallback_no_compatible_endpoints, t.translation_requests);
});
