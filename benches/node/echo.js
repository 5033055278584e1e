// Echo with Node.js's net module, as the tutorial monoloop grows from
// writes it: pipe the socket into itself (pipe handles backpressure).
const net = require('net');
const i = process.argv.indexOf('--listen');
const [host, port] = (i > 0 ? process.argv[i + 1] : '127.0.0.1:0').split(':');
const server = net.createServer((socket) => {
  socket.setNoDelay(true);
  socket.on('error', () => {});
  socket.pipe(socket);
});
server.listen(Number(port), host, () => {
  const a = server.address();
  process.stderr.write(`node listening on ${a.address}:${a.port}\n`);
});
