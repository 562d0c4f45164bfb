// Helpers for e2e test files that start their own proxy and simulators:
// free ports, processes that log to .run/<dir>/<name>.log, and polling.
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';

// freePorts returns n distinct free TCP ports on 127.0.0.1 (each listener is
// held until all are bound).
export async function freePorts(n) {
  const servers = [];
  for (let i = 0; i < n; i++) {
    const srv = net.createServer();
    await new Promise((resolve, reject) => { srv.once('error', reject); srv.listen(0, '127.0.0.1', resolve); });
    servers.push(srv);
  }
  const ports = servers.map((s) => s.address().port);
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  return ports;
}

// processes starts commands from the repository root whose output goes to
// runDir/<name>.log when they exit; stopAll ends every one still running.
export function processes(root, runDir) {
  const procs = [];
  return {
    procs,
    start(name, cmd, args, env = {}) {
      const p = spawn(cmd, args, { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
      const log = [];
      p.stdout.on('data', (b) => log.push(b));
      p.stderr.on('data', (b) => log.push(b));
      p.on('exit', () => writeFileSync(path.join(runDir, `${name}.log`), Buffer.concat(log)));
      procs.push(p);
      return p;
    },
    stopAll() {
      for (const p of procs) p.kill('SIGTERM');
    },
  };
}

// until polls fn every 100 ms until it returns something truthy, or throws
// after ms naming what it waited for.
export async function until(what, fn, ms = 20000) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    try {
      last = await fn();
      if (last) return last;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what} (last: ${last})`);
}

// startProxy writes a Caddyfile with one olla site on port (admin API on
// admin) in front of endpoints ([name, port, type] triples, probed every
// 300 ms) and starts bin/caddy on it, its state kept under runDir. Take
// port and admin from the same freePorts call as the simulators' ports, so
// none can repeat. It returns the site's base URL and the admin API's.
// extra: more olla directives, one a line (e.g. a load_balancer).
export function startProxy(set, runDir, { port, admin }, endpoints, extra = '') {  const block = endpoints.map(([name, p, type]) => `
		endpoint ${name} {
			url http://127.0.0.1:${p}
			type ${type}
			check_interval 300ms
			check_timeout 250ms
		}`).join('\n');
  const caddyfile = `{
	admin 127.0.0.1:${admin}
	auto_https off
	persist_config off
}
http://:${port} {
	bind 127.0.0.1
	olla {
${block}
${extra}
	}
}
`;
  writeFileSync(path.join(runDir, 'Caddyfile'), caddyfile);
  set.start('caddy', 'bin/caddy', ['run', '--config', path.join(runDir, 'Caddyfile'), '--adapter', 'caddyfile'],
    { XDG_CONFIG_HOME: path.join(runDir, 'xdg-config'), XDG_DATA_HOME: path.join(runDir, 'xdg-data') });
  return { base: `http://127.0.0.1:${port}`, adminURL: `http://127.0.0.1:${admin}` };
}

// allRoutable waits until the proxy at base routes n endpoints, each with
// its models known.
export function allRoutable(base, n) {
  return until(`${n} endpoints routable`, async () => {
    const res = await fetch(`${base}/internal/status/endpoints`);
    const body = await res.json();
    return body.routable_count === n && body.endpoints.every((e) => e.model_count > 0);
  });
}

// stopped stops every process of set and resolves once all have exited.
export async function stopped(set) {
  set.stopAll();
  await Promise.all(set.procs.map((p) => (p.exitCode !== null ? null : new Promise((r) => p.once('exit', r)))));
}
