// Shared by the tests: where run.sh put everything, and the official clients
// pointed at the proxy's provider routes.
import OpenAI from 'openai';
import { Ollama } from 'ollama';

function need(name) {
  const v = process.env[name];
  if (!v) {
    throw new Error(`${name} is not set: run the suite with \`make e2e\` (e2e/run.sh), which starts the proxy and the backends`);
  }
  return v;
}

export const BASE = need('E2E_BASE_URL');

const [ollamaChat, ollamaEmbed] = need('E2E_OLLAMA_MODELS').split(',');
const [lmstudioChat, lmstudioEmbed] = need('E2E_LMSTUDIO_MODELS').split(',');

/** Model names the backends serve (set by run.sh). */
export const MODELS = {
  ollama: { chat: ollamaChat, embed: ollamaEmbed }, // on ollama-a and ollama-b
  lmstudio: { chat: lmstudioChat, embed: lmstudioEmbed }, // on lmstudio only
};

/** The simulators' pacing: words per completion, tokens a second, embedding length. */
export const SIM = {
  tokens: Number(need('E2E_TOKENS')),
  tps: Number(need('E2E_TPS')),
  dims: Number(need('E2E_DIMS')),
};

export const BACKENDS = {
  ollamaA: { name: 'ollama-a', url: need('E2E_OLLAMA_A_URL') },
  ollamaB: { name: 'ollama-b', url: need('E2E_OLLAMA_B_URL'), pid: Number(need('E2E_OLLAMA_B_PID')) },
  lmstudio: { name: 'lmstudio', url: need('E2E_LMSTUDIO_URL') },
};

/** The provider routes the OpenAI client is pointed at. */
export const OPENAI_ROUTES = {
  openai: '/olla/openai/v1',
  lmstudio: '/olla/lmstudio/v1',
};

/**
 * The OpenAI client on one of the proxy's routes. No client-side retries:
 * a request that succeeds must have succeeded through the proxy alone.
 */
export function openai(route) {
  return new OpenAI({
    baseURL: BASE + route,
    apiKey: 'e2e-unused', // the proxy does not forward it to the backends
    maxRetries: 0,
    timeout: 15_000,
  });
}

/**
 * The Ollama client on /olla/ollama. It has no way to show response headers,
 * so it is given a fetch that keeps them: client.lastHeaders() are those of
 * the latest response.
 */
export function ollama() {
  let last = null;
  const client = new Ollama({
    host: `${BASE}/olla/ollama`,
    fetch: async (input, init) => {
      const res = await fetch(input, init);
      last = res.headers;
      return res;
    },
  });
  client.lastHeaders = () => last;
  return client;
}

export const USER = [{ role: 'user', content: 'Say hello in ten words.' }];

/** Counts the whitespace-separated words of s. */
export function words(s) {
  return s.trim().split(/\s+/).filter(Boolean).length;
}

/** GET a JSON document from the proxy (status routes). */
export async function getJSON(path) {
  const res = await fetch(BASE + path, { signal: AbortSignal.timeout(5000) });
  if (res.status !== 200) {
    throw new Error(`GET ${path}: ${res.status} ${await res.text()}`);
  }
  return res.json();
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
