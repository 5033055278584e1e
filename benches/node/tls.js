// A TLS echo server with Node.js's tls module, for the TLS scenario:
// the same certificate and key as monoloop's, pipe the socket into itself.
const tls = require('tls');
const fs = require('fs');
const arg = (name, dflt) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const [host, port] = arg('--listen', '127.0.0.1:0').split(':');
const server = tls.createServer(
  { cert: fs.readFileSync(arg('--cert')), key: fs.readFileSync(arg('--key')) },
  (socket) => {
    socket.setNoDelay(true);
    socket.on('error', () => {});
    socket.pipe(socket);
  },
);
server.on('tlsClientError', () => {});
server.listen(Number(port), host, () => {
  const a = server.address();
  process.stderr.write(`node-tls listening on ${a.address}:${a.port}\n`);
});
