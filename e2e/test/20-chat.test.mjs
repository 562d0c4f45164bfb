// Chat, non-streamed and streamed, through both official clients on every
// provider route. The simulators answer SIM.tokens words paced at SIM.tps.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { MODELS, OPENAI_ROUTES, SIM, USER, openai, ollama, words } from '../lib/env.mjs';

const ENDPOINTS = { ollama: ['ollama-a', 'ollama-b'], 'lm-studio': ['lmstudio'] };

function checkOllaHeaders(headers, model, type) {
  assert.equal(headers.get('x-olla-backend-type'), type, 'X-Olla-Backend-Type');
  assert.equal(headers.get('x-olla-model'), model, 'X-Olla-Model');
  assert.ok(ENDPOINTS[type].includes(headers.get('x-olla-endpoint')),
    `X-Olla-Endpoint ${headers.get('x-olla-endpoint')} is one of ${ENDPOINTS[type]}`);
  assert.match(headers.get('x-olla-request-id') ?? '', /\S/, 'X-Olla-Request-ID');
}

// The backend spaces its SIM.tokens tokens 1/SIM.tps apart; a proxy that
// streams passes that spacing on, one that buffers delivers them at once.
function checkPaced(times) {
  const paced = ((SIM.tokens - 1) / SIM.tps) * 1000;
  const spread = times.at(-1) - times[0];
  assert.ok(spread >= paced / 3,
    `the ${times.length} content chunks arrived within ${spread.toFixed(0)} ms although the backend sent them over ~${paced.toFixed(0)} ms: the stream was buffered`);
}

const openaiCases = [
  { route: OPENAI_ROUTES.openai, model: MODELS.ollama.chat, type: 'ollama' },
  { route: OPENAI_ROUTES.openai, model: MODELS.lmstudio.chat, type: 'lm-studio' },
  { route: OPENAI_ROUTES.lmstudio, model: MODELS.lmstudio.chat, type: 'lm-studio' },
];

for (const { route, model, type } of openaiCases) {
  describe(`OpenAI client on ${route}, ${model} (${type})`, () => {
    test('chat.completions.create, not streamed', async () => {
      const { data, response } = await openai(route).chat.completions
        .create({ model, messages: USER })
        .withResponse();
      assert.equal(response.status, 200);
      checkOllaHeaders(response.headers, model, type);
      assert.equal(data.object, 'chat.completion');
      assert.equal(data.model, model);
      assert.equal(data.choices.length, 1);
      const [choice] = data.choices;
      assert.equal(choice.message.role, 'assistant');
      assert.equal(words(choice.message.content), SIM.tokens, `content: ${JSON.stringify(choice.message.content)}`);
      assert.equal(choice.finish_reason, 'stop');
      assert.equal(data.usage?.completion_tokens, SIM.tokens, 'usage.completion_tokens');
    });

    test('chat.completions.create, streamed: several chunks, then a normal end', async () => {
      const { data: stream, response } = await openai(route).chat.completions
        .create({ model, messages: USER, stream: true, stream_options: { include_usage: true } })
        .withResponse();
      assert.equal(response.status, 200);
      assert.match(response.headers.get('content-type') ?? '', /^text\/event-stream/);
      checkOllaHeaders(response.headers, model, type);

      const times = [];
      let text = '';
      let finish = null;
      let usage = null;
      let chunks = 0;
      for await (const chunk of stream) {
        chunks++;
        assert.equal(chunk.object, 'chat.completion.chunk');
        if (chunk.usage) usage = chunk.usage;
        for (const c of chunk.choices) {
          assert.equal(finish, null, 'no content after the finish reason');
          if (c.delta?.content) {
            times.push(performance.now());
            text += c.delta.content;
          }
          if (c.finish_reason) finish = c.finish_reason;
        }
      }
      // the iterator ended without throwing: the stream reached [DONE]
      assert.ok(times.length >= 3, `content came in ${times.length} chunk(s) of ${chunks}`);
      assert.equal(words(text), SIM.tokens, `streamed content: ${JSON.stringify(text)}`);
      assert.equal(finish, 'stop', 'finish_reason');
      assert.equal(usage?.completion_tokens, SIM.tokens, 'usage chunk (stream_options.include_usage)');
      checkPaced(times);
    });
  });
}

describe(`Ollama client on /olla/ollama, ${MODELS.ollama.chat}`, () => {
  test('chat, not streamed', async () => {
    const client = ollama();
    const res = await client.chat({ model: MODELS.ollama.chat, messages: USER, stream: false });
    checkOllaHeaders(client.lastHeaders(), MODELS.ollama.chat, 'ollama');
    assert.equal(res.model, MODELS.ollama.chat);
    assert.equal(res.message.role, 'assistant');
    assert.equal(words(res.message.content), SIM.tokens, `content: ${JSON.stringify(res.message.content)}`);
    assert.equal(res.done, true);
    assert.equal(res.done_reason, 'stop');
    assert.equal(res.eval_count, SIM.tokens);
  });

  test('chat, streamed: several chunks, then done', async () => {
    const client = ollama();
    const stream = await client.chat({ model: MODELS.ollama.chat, messages: USER, stream: true });
    checkOllaHeaders(client.lastHeaders(), MODELS.ollama.chat, 'ollama');
    const times = [];
    let text = '';
    let last = null;
    for await (const part of stream) {
      // the client itself throws on an {"error"} line or a stream without done
      assert.equal(last?.done ?? false, false, 'nothing after the done line');
      if (part.message?.content) {
        times.push(performance.now());
        text += part.message.content;
      }
      last = part;
    }
    assert.ok(times.length >= 3, `content came in ${times.length} chunk(s)`);
    assert.equal(words(text), SIM.tokens, `streamed content: ${JSON.stringify(text)}`);
    assert.equal(last.done, true);
    assert.equal(last.done_reason, 'stop');
    assert.equal(last.eval_count, SIM.tokens);
    checkPaced(times);
  });

  test('generate, streamed', async () => {
    const client = ollama();
    const stream = await client.generate({ model: MODELS.ollama.chat, prompt: 'Hello', stream: true });
    let text = '';
    let parts = 0;
    let last = null;
    for await (const part of stream) {
      parts++;
      text += part.response;
      last = part;
    }
    assert.ok(parts >= 3, `${parts} parts`);
    assert.equal(words(text), SIM.tokens);
    assert.equal(last.done, true);
    assert.equal(last.done_reason, 'stop');
  });
});
