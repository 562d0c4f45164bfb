// Prints N free TCP ports on 127.0.0.1, space-separated: every listener is
// held open until all N are bound, so the ports are distinct.
import net from 'node:net';

const n = Number(process.argv[2] ?? 1);
const servers = [];
for (let i = 0; i < n; i++) {
  const srv = net.createServer();
  await new Promise((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', resolve);
  });
  servers.push(srv);
}
const ports = servers.map((s) => s.address().port);
await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
console.log(ports.join(' '));
