// Errors the proxy produces itself must reach each client as that client's own
// typed error, parsed from our body: the OpenAI client's NotFoundError, the
// Ollama client's ResponseError.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI, { APIError, NotFoundError } from 'openai';
import { BASE, MODELS, OPENAI_ROUTES, USER, openai, ollama } from '../lib/env.mjs';

const UNKNOWN = 'no-such-model:1b';

/** The proxy's raw answer to a POST, to compare the clients' errors with. */
async function raw(path, body) {
  const res = await fetch(BASE + path, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: res.status, headers: res.headers, text: await res.text() };
}

/** Runs fn, which must throw; returns what it threw. */
async function thrown(fn) {
  try {
    await fn();
  } catch (err) {
    return err;
  }
  assert.fail('the request succeeded; an error was expected');
}

for (const route of [OPENAI_ROUTES.openai, OPENAI_ROUTES.lmstudio]) {
  describe(`OpenAI client on ${route}, unknown model`, () => {
    const calls = {
      'chat.completions.create': (c) => c.chat.completions.create({ model: UNKNOWN, messages: USER }),
      'chat.completions.create, streamed': async (c) => {
        const stream = await c.chat.completions.create({ model: UNKNOWN, messages: USER, stream: true });
        for await (const _ of stream); // eslint-disable-line no-unused-vars
      },
      'embeddings.create': (c) => c.embeddings.create({ model: UNKNOWN, input: 'x' }),
    };
    for (const [name, call] of Object.entries(calls)) {
      test(`${name} raises NotFoundError (404) with our message`, async () => {
        const err = await thrown(() => call(openai(route)));
        assert.ok(err instanceof NotFoundError, `want NotFoundError, got ${err?.constructor?.name}: ${err?.message}`);
        assert.ok(err instanceof OpenAI.APIError && err instanceof APIError);
        assert.equal(err.status, 404);
        assert.equal(typeof err.error?.message, 'string', 'the client parsed the error object from our body');
        assert.match(err.error.message, new RegExp(`^model '${UNKNOWN}' not found`));
        assert.equal(err.message, `404 ${err.error.message}`);
        assert.equal(err.code, 'model_not_found');
        assert.match(err.headers.get('x-olla-request-id') ?? '', /\S/, 'X-Olla-Request-ID on our error');
      });
    }

    test('the message is the one in our OpenAI error envelope', async () => {
      const r = await raw(`${route}/chat/completions`, { model: UNKNOWN, messages: USER });
      assert.equal(r.status, 404);
      assert.match(r.headers.get('content-type') ?? '', /^application\/json/);
      const body = JSON.parse(r.text);
      assert.equal(typeof body.error?.message, 'string', `OpenAI envelope: ${r.text}`);
      assert.equal(typeof body.error.type, 'string');
      const err = await thrown(() => calls['chat.completions.create'](openai(route)));
      assert.deepEqual(err.error, body.error);
    });
  });
}

describe('Ollama client on /olla/ollama, unknown model', () => {
  const calls = {
    chat: (c) => c.chat({ model: UNKNOWN, messages: USER, stream: false }),
    'chat, streamed': async (c) => {
      for await (const _ of await c.chat({ model: UNKNOWN, messages: USER, stream: true })); // eslint-disable-line no-unused-vars
    },
    generate: (c) => c.generate({ model: UNKNOWN, prompt: 'Hello', stream: false }),
    embed: (c) => c.embed({ model: UNKNOWN, input: 'x' }),
    show: (c) => c.show({ model: UNKNOWN }),
  };
  for (const [name, call] of Object.entries(calls)) {
    test(`${name} raises ResponseError with status_code 404 and our message`, async () => {
      const err = await thrown(() => call(ollama()));
      // the package does not export ResponseError; it is recognised by name
      assert.equal(err.name, 'ResponseError', `want ResponseError, got ${err?.name}: ${err?.message}`);
      assert.equal(err.status_code, 404);
      assert.match(err.error, new RegExp(`^model '${UNKNOWN}' not found`));
      assert.equal(err.message, err.error);
    });
  }

  test('the message is the one in our Ollama error body', async () => {
    const r = await raw('/olla/ollama/api/chat', { model: UNKNOWN, messages: USER });
    assert.equal(r.status, 404);
    assert.match(r.headers.get('content-type') ?? '', /^application\/json/);
    const body = JSON.parse(r.text);
    assert.equal(typeof body.error, 'string', `Ollama error shape: ${r.text}`);
    const err = await thrown(() => calls.chat(ollama()));
    assert.equal(err.error, body.error);
  });
});

// A provider route never crosses to another backend type: a model that only
// another type serves is refused (503 model_unavailable, as the reference
// proxy answers) instead of being routed there.
describe('provider routes stay within their backend type', () => {
  test(`OpenAI client on ${OPENAI_ROUTES.lmstudio} with an Ollama-only model is refused`, async () => {
    const err = await thrown(() => openai(OPENAI_ROUTES.lmstudio).chat.completions
      .create({ model: MODELS.ollama.chat, messages: USER }));
    assert.ok(err instanceof APIError, `want an APIError, got ${err?.constructor?.name}: ${err?.message}`);
    assert.equal(err.status, 503);
    assert.equal(err.code, 'model_unavailable');
    assert.equal(err.headers.get('x-olla-endpoint'), null, 'no endpoint answered');
  });

  test(`Ollama client on /olla/ollama with an LM Studio-only model is refused`, async () => {
    const client = ollama();
    const err = await thrown(() => client.chat({ model: MODELS.lmstudio.chat, messages: USER, stream: false }));
    assert.equal(err.name, 'ResponseError', `want ResponseError, got ${err?.name}: ${err?.message}`);
    assert.equal(err.status_code, 503);
    assert.match(err.error, new RegExp(MODELS.lmstudio.chat.replace(/[.]/g, '\\.')));
    assert.equal(client.lastHeaders().get('x-olla-endpoint'), null, 'no endpoint answered');
  });
});
