// Coding agents as installed from npm, through the proxy: Claude Code
// (@anthropic-ai/claude-code) with its default tools on, at
// ANTHROPIC_BASE_URL=<olla>/olla/anthropic, and Codex (@openai/codex) with a
// custom provider (wire_api = "responses") at <olla>/olla/openai/v1. Each
// runs against a backend that speaks its API natively (passthrough) and one
// that does not (translated from chat completions). Offline: the env below
// turns off every call an agent makes besides the model's (telemetry,
// update checks, error reports), and a run that still tried one would hang
// into the test's deadline. This file starts its own proxy and simulators.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { allRoutable, freePorts, processes, startProxy, stopped } from '../lib/procs.mjs';

const require = createRequire(import.meta.url);
const root = process.cwd();
const runDir = path.join(root, 'e2e', '.run', 'agents');
const set = processes(root, runDir);
const { start } = set;
const TOKENS = 6;
// Ollama's simulator speaks Messages and Responses natively; llama.cpp's
// has Messages but no Responses; the generic OpenAI-compatible one has
// neither.
const NATIVE = 'qwen3:8b';
const TRANSLATED = 'gpt-sim-mini';

// The agents' entry points, wherever npm put them (the Claude Code wrapper
// runs its platform's native binary even when npm skipped its postinstall).
const CLAUDE = require.resolve('@anthropic-ai/claude-code/cli-wrapper.cjs');
const CODEX = require.resolve('@openai/codex/bin/codex.js');

let base;
let simURL;

before(async () => {
  mkdirSync(runDir, { recursive: true });
  const [port, admin, pn, po] = await freePorts(4);
  // agents send long prompts (Codex about 5,000 tokens of instructions and
  // tools): a context of 32k tokens, as a coding model has
  const pace = `ttft=20ms;tps=200;tokens=${TOKENS};ctx=32768`;
  start('sim-native', 'bin/olla-sim', ['-sim', `ollama@127.0.0.1:${pn}=${NATIVE};name=native;${pace}`]);
  start('sim-openai', 'bin/olla-sim', ['-sim', `openai@127.0.0.1:${po}=${TRANSLATED};name=openai;${pace}`]);
  simURL = { native: `http://127.0.0.1:${pn}`, openai: `http://127.0.0.1:${po}` };
  ({ base } = startProxy(set, runDir, { port, admin }, [['native', pn, 'ollama'], ['openai', po, 'openai']]));
  await allRoutable(base, 2);
});

after(() => stopped(set));

// run executes an agent and resolves with its output; it fails the test on
// a non-zero exit, naming stderr.
function run(name, cmd, args, env, cwd) {
  return new Promise((resolve, reject) => {
    const child = execFile(process.execPath, [cmd, ...args], { cwd, env, timeout: 120_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      writeFileSync(path.join(runDir, `${name}.out`), `${stdout}\n--- stderr\n${stderr}`);
      if (err) {
        reject(new Error(`${name} failed (${err.code ?? err.signal}): ${stderr.slice(-2000)}`));
        return;
      }
      resolve({ stdout, stderr });
    });
    child.stdin.end(); // codex exec reads a piped stdin as more prompt: give it none
  });
}

async function simStats(which) {
  const res = await fetch(`${simURL[which]}/_sim/stats`);
  return (await res.json()).by_path ?? {};
}

// A fresh home per run, so no login, config or cache of the machine's
// leaks in; only what the README tells a user to set.
function home(name) {
  const dir = path.join(runDir, name);
  mkdirSync(path.join(dir, 'work'), { recursive: true });
  return dir;
}

function claudeEnv(dir, model) {
  return {
    PATH: process.env.PATH,
    HOME: dir,
    ANTHROPIC_BASE_URL: `${base}/olla/anthropic`,
    ANTHROPIC_API_KEY: 'olla-local', // any value: the proxy does not check it
    ANTHROPIC_MODEL: model,
    ANTHROPIC_SMALL_FAST_MODEL: model,
    CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1',
    DISABLE_AUTOUPDATER: '1',
    DISABLE_TELEMETRY: '1',
    DISABLE_ERROR_REPORTING: '1',
  };
}

describe('Claude Code through /olla/anthropic', () => {
  for (const { model, mode, sim, path: apiPath } of [
    { model: NATIVE, mode: 'passthrough', sim: 'native', path: 'POST /v1/messages' },
    { model: TRANSLATED, mode: 'translation', sim: 'openai', path: 'POST /v1/chat/completions' },
  ]) {
    test(`claude -p answers (${mode})`, async () => {
      const before = (await simStats(sim))[apiPath] ?? 0;
      const dir = home(`claude-text-${mode}`);
      const { stdout } = await run(`claude-text-${mode}`, CLAUDE, ['-p', 'Say hello.'], claudeEnv(dir, model), path.join(dir, 'work'));
      assert.ok(stdout.trim().split(/\s+/).length >= TOKENS, `claude printed ${JSON.stringify(stdout)}`);
      assert.ok(((await simStats(sim))[apiPath] ?? 0) > before, `the ${sim} backend was not asked (${apiPath})`);
    });

    test(`claude -p --output-format stream-json answers (${mode})`, async () => {
      const dir = home(`claude-json-${mode}`);
      const { stdout } = await run(`claude-json-${mode}`, CLAUDE, ['-p', 'Say hello.', '--output-format', 'stream-json', '--verbose'],
        claudeEnv(dir, model), path.join(dir, 'work'));
      const lines = stdout.trim().split('\n').map((l) => JSON.parse(l));
      const init = lines.find((l) => l.type === 'system' && l.subtype === 'init');
      assert.ok(init && init.tools.length > 0, 'no init line naming the default tools');
      const result = lines.at(-1);
      assert.equal(result.type, 'result');
      assert.equal(result.subtype, 'success', JSON.stringify(result));
      assert.equal(result.is_error, false, JSON.stringify(result));
      assert.ok(result.result.trim().split(/\s+/).length >= TOKENS, JSON.stringify(result));
    });
  }
});

function codexHome(name, model) {
  const dir = home(name);
  const codex = path.join(dir, '.codex');
  mkdirSync(codex, { recursive: true });
  // As in the README: a custom provider on the Responses API. No retries,
  // so a failure shows at once instead of after a backoff.
  writeFileSync(path.join(codex, 'config.toml'), `model = "${model}"
model_provider = "olla"

[model_providers.olla]
name = "olla"
base_url = "${base}/olla/openai/v1"
wire_api = "responses"
env_key = "OLLA_API_KEY"
request_max_retries = 0
stream_max_retries = 0

[analytics]
enabled = false
`);
  return { dir, env: { PATH: process.env.PATH, HOME: dir, CODEX_HOME: codex, OLLA_API_KEY: 'olla-local' } };
}

describe('Codex through /olla/openai/v1 (wire_api = "responses")', () => {
  for (const { model, mode, sim, path: apiPath } of [
    { model: NATIVE, mode: 'passthrough', sim: 'native', path: 'POST /v1/responses' },
    { model: TRANSLATED, mode: 'translation', sim: 'openai', path: 'POST /v1/chat/completions' },
  ]) {
    test(`codex exec answers (${mode})`, async () => {
      const before = (await simStats(sim))[apiPath] ?? 0;
      const { dir, env } = codexHome(`codex-${mode}`, model);
      const { stdout } = await run(`codex-${mode}`, CODEX, ['exec', '--skip-git-repo-check', 'Say hello.'], env, path.join(dir, 'work'));
      assert.ok(stdout.trim().split(/\s+/).length >= TOKENS, `codex printed ${JSON.stringify(stdout)}`);
      assert.ok(((await simStats(sim))[apiPath] ?? 0) > before, `the ${sim} backend was not asked (${apiPath})`);
      if (sim === 'openai') {
        assert.equal((await simStats(sim))['POST /v1/responses'] ?? 0, 0, 'the OpenAI-compatible backend was sent /v1/responses');
      }
    });
  }
});
