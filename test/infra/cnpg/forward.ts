// Runs inside a pod's (or the operator's) network namespace, started by harness.ts: listens
// on HOST:PORT there and pipes every connection to a unix socket, which the harness serves in
// the root namespace by connecting to kube-apiserver on 127.0.0.1. Unix sockets cross network
// namespaces, so the apiserver keeps listening on 127.0.0.1 only; TLS passes through
// untouched (the apiserver's certificate has a 127.0.0.1 SAN).
//
// Usage: node forward.ts HOST PORT SOCKET_PATH   (prints "listening" once it is)
import { connect, createServer } from "node:net";

const [host, port, socketPath] = process.argv.slice(2);
if (!host || !port || !socketPath) {
  console.error("usage: forward.ts HOST PORT SOCKET_PATH");
  process.exit(2);
}
const server = createServer((client) => {
  const upstream = connect(socketPath);
  client.pipe(upstream).pipe(client);
  const close = () => {
    client.destroy();
    upstream.destroy();
  };
  client.on("error", close);
  upstream.on("error", close);
  client.on("close", close);
  upstream.on("close", close);
});
server.on("error", (error) => {
  console.error(`forward: ${error.message}`);
  process.exit(1);
});
server.listen(Number(port), host, () => console.log("listening"));
// The harness owns this process: when its stdin (a pipe from the harness) closes, stop.
process.stdin.resume();
process.stdin.on("end", () => process.exit(0));
process.stdin.on("error", () => process.exit(0));
