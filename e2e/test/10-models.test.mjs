// Model listings through the official clients, one per provider route.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MODELS, OPENAI_ROUTES, openai, ollama } from '../lib/env.mjs';

const ollamaModels = [MODELS.ollama.chat, MODELS.ollama.embed].sort();
const lmstudioModels = [MODELS.lmstudio.chat, MODELS.lmstudio.embed].sort();

function checkOpenAIEntries(page) {
  assert.ok(Array.isArray(page.data), 'the page has a data array');
  for (const m of page.data) {
    assert.equal(typeof m.id, 'string');
    assert.equal(m.object, 'model', `${m.id}: object`);
    assert.equal(typeof m.created, 'number', `${m.id}: created`);
    assert.equal(typeof m.owned_by, 'string', `${m.id}: owned_by`);
  }
  return page.data.map((m) => m.id);
}

test('OpenAI client models.list() on /olla/openai/v1 lists every model once', async () => {
  const page = await openai(OPENAI_ROUTES.openai).models.list();
  const ids = checkOpenAIEntries(page);
  assert.deepEqual([...ids].sort(), [...ollamaModels, ...lmstudioModels].sort(),
    'Ollama and LM Studio models, each once (llama3.2 lives on two endpoints)');
});

test('OpenAI client models.list() on /olla/lmstudio/v1 lists only LM Studio models', async () => {
  const page = await openai(OPENAI_ROUTES.lmstudio).models.list();
  const ids = checkOpenAIEntries(page);
  assert.deepEqual([...ids].sort(), lmstudioModels);
});

test('OpenAI client iterates the model list with auto-pagination', async () => {
  const ids = [];
  for await (const m of openai(OPENAI_ROUTES.openai).models.list()) ids.push(m.id);
  assert.deepEqual(ids.sort(), [...ollamaModels, ...lmstudioModels].sort());
});

// The OpenAI client's models.retrieve(id) is GET <base>/models/<id>. Every
// model the route lists must be retrievable on it, whichever endpoint the
// balancer has next: each id is asked for once per endpoint behind the
// route (round-robin), so an answer that depends on the endpoint shows.
for (const [route, endpoints] of [[OPENAI_ROUTES.openai, 3], [OPENAI_ROUTES.lmstudio, 1]]) {
  test(`OpenAI client models.retrieve() on ${route} answers for every listed model`, async () => {
    const client = openai(route);
    const ids = (await client.models.list()).data.map((m) => m.id);
    const failures = [];
    for (const id of ids) {
      for (let i = 0; i < endpoints; i++) {
        try {
          const { data: m, response } = await client.models.retrieve(id).withResponse();
          assert.equal(m.id, id);
          assert.equal(m.object, 'model');
          assert.equal(response.status, 200);
        } catch (err) {
          const via = err.headers?.get?.('x-olla-endpoint') ?? '?';
          failures.push(`GET ${route}/models/${encodeURIComponent(id)} (try ${i + 1}, answered by ${via}): ${err.message}`);
        }
      }
    }
    if (failures.length) {
      assert.fail(`${failures.length} retrieval(s) of models listed on ${route} failed:\n    ${failures.join('\n    ')}`);
    }
  });
}

test('Ollama client list() on /olla/ollama lists only Ollama models, merged across endpoints', async () => {
  const { models } = await ollama().list();
  assert.ok(Array.isArray(models), 'models is an array');
  assert.deepEqual(models.map((m) => m.name).sort(), ollamaModels);
  for (const m of models) {
    assert.equal(m.model, m.name, `${m.name}: model`);
    assert.match(m.digest, /^[0-9a-f]{64}$/, `${m.name}: digest`);
    assert.equal(typeof m.size, 'number', `${m.name}: size`);
    assert.ok(!Number.isNaN(Date.parse(m.modified_at)), `${m.name}: modified_at is a date`);
    assert.equal(typeof m.details?.family, 'string', `${m.name}: details.family`);
  }
});

test('Ollama client show() routes by model on /olla/ollama', async () => {
  const client = ollama();
  const info = await client.show({ model: MODELS.ollama.chat });
  assert.equal(typeof info.modelfile, 'string');
  assert.equal(typeof info.details?.family, 'string');
  assert.equal(client.lastHeaders().get('x-olla-backend-type'), 'ollama');
});
