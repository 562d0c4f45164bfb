// Embeddings through both official clients. The simulators return SIM.dims
// floats per input.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { MODELS, OPENAI_ROUTES, SIM, openai, ollama } from '../lib/env.mjs';

function checkVector(v, label) {
  assert.ok(Array.isArray(v), `${label} is an array`);
  assert.equal(v.length, SIM.dims, `${label} has ${SIM.dims} floats`);
  assert.ok(v.every(Number.isFinite), `${label} holds finite numbers`);
  assert.ok(v.some((x) => x !== 0), `${label} is not all zeros`);
}

const cases = [
  { route: OPENAI_ROUTES.openai, model: MODELS.lmstudio.embed, type: 'lm-studio' },
  { route: OPENAI_ROUTES.openai, model: MODELS.ollama.embed, type: 'ollama' },
  { route: OPENAI_ROUTES.lmstudio, model: MODELS.lmstudio.embed, type: 'lm-studio' },
];

for (const { route, model, type } of cases) {
  describe(`OpenAI client embeddings.create on ${route}, ${model} (${type})`, () => {
    // the client asks for base64 unless told otherwise, and decodes it
    test('default encoding (base64 on the wire)', async () => {
      const { data: res, response } = await openai(route).embeddings
        .create({ model, input: ['first text', 'second text'] })
        .withResponse();
      assert.equal(response.headers.get('x-olla-backend-type'), type);
      assert.equal(res.object, 'list');
      assert.equal(res.model, model);
      assert.equal(res.data.length, 2);
      res.data.forEach((d, i) => {
        assert.equal(d.object, 'embedding');
        assert.equal(d.index, i);
        checkVector(d.embedding, `data[${i}].embedding`);
      });
      assert.notDeepEqual(res.data[0].embedding, res.data[1].embedding, 'different inputs, different vectors');
    });

    test('encoding_format float', async () => {
      const res = await openai(route).embeddings.create({ model, input: 'one text', encoding_format: 'float' });
      assert.equal(res.data.length, 1);
      checkVector(res.data[0].embedding, 'data[0].embedding');
    });
  });
}

describe(`Ollama client on /olla/ollama, ${MODELS.ollama.embed}`, () => {
  test('embed, several inputs', async () => {
    const client = ollama();
    const res = await client.embed({ model: MODELS.ollama.embed, input: ['first text', 'second text'] });
    assert.equal(client.lastHeaders().get('x-olla-backend-type'), 'ollama');
    assert.equal(res.model, MODELS.ollama.embed);
    assert.equal(res.embeddings.length, 2);
    res.embeddings.forEach((v, i) => checkVector(v, `embeddings[${i}]`));
  });

  test('embed, one input', async () => {
    const res = await ollama().embed({ model: MODELS.ollama.embed, input: 'one text' });
    assert.equal(res.embeddings.length, 1);
    checkVector(res.embeddings[0], 'embeddings[0]');
  });
});
