// Start-up gates for run.sh; exits 0 when the condition holds, 1 on timeout
// or when a watched process died.
//
//   node wait.mjs sims URL...            every simulator answers GET /_sim/stats
//   node wait.mjs olla BASE MODEL...     GET /internal/ready is 200 and
//                                        GET /olla/models lists every MODEL
//
// E2E_WAIT_PIDS (space-separated) are processes that must stay alive;
// E2E_WAIT_SECONDS bounds the wait (default 20).
const [what, ...args] = process.argv.slice(2);
const deadline = Date.now() + 1000 * Number(process.env.E2E_WAIT_SECONDS ?? 20);
const pids = (process.env.E2E_WAIT_PIDS ?? '').split(/\s+/).filter(Boolean).map(Number);

async function get(url) {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
    return { status: res.status, body: await res.text() };
  } catch (err) {
    return { status: 0, body: String(err?.cause?.code ?? err?.cause?.message ?? err?.message ?? err) };
  }
}

function deadProcess() {
  for (const pid of pids) {
    try {
      process.kill(pid, 0);
    } catch {
      return pid;
    }
  }
  return 0;
}

const checks = {
  async sims(urls) {
    for (const url of urls) {
      const r = await get(`${url}/_sim/stats`);
      if (r.status !== 200) return `${url}/_sim/stats: ${r.status || r.body}`;
    }
    return '';
  },
  async olla([base, ...models]) {
    const ready = await get(`${base}/internal/ready`);
    if (ready.status !== 200) return `/internal/ready: ${ready.status || ready.body}`;
    const list = await get(`${base}/olla/models`);
    if (list.status !== 200) return `/olla/models: ${list.status || list.body}`;
    let ids;
    try {
      ids = new Set(JSON.parse(list.body).data.map((m) => m.id));
    } catch (err) {
      return `/olla/models: unreadable listing (${err.message}): ${list.body.slice(0, 200)}`;
    }
    const missing = models.filter((m) => !ids.has(m));
    return missing.length ? `/olla/models does not list ${missing.join(', ')} yet` : '';
  },
};

if (!checks[what]) {
  console.error(`wait.mjs: unknown condition ${what}; want ${Object.keys(checks).join(' or ')}`);
  process.exit(2);
}
let why = '';
for (;;) {
  why = await checks[what](args);
  if (!why) process.exit(0);
  const dead = deadProcess();
  if (dead) {
    console.error(`wait.mjs: process ${dead} exited while waiting (${why})`);
    process.exit(1);
  }
  if (Date.now() > deadline) break;
  await new Promise((r) => setTimeout(r, 100));
}
console.error(`wait.mjs: timed out waiting for ${what}: ${why}`);
process.exit(1);
