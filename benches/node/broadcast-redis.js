// The tutorial's broadcast relay with Node.js's net module (each line to
// every other client, behind monoloop's default prefix `[Broadcast] `, so
// that the same load generator checks both), made into one of several
// instances the way most guides do it: ioredis pub/sub on one channel.
// Every line a client sends is written to the other clients here and
// published, tagged with this instance's id; what arrives on the channel
// from another instance is written to every client here (its own
// publications are skipped). Pub/sub, not a stream: a message published
// while an instance's subscriber is away is lost, as in Socket.IO's Redis
// adapter. Backpressure is the tutorial's: none (`write` buffers).
//
//   node broadcast-redis.js --listen 127.0.0.1:0 --redis redis://127.0.0.1:6379
//
// ioredis comes from npm: `npm ci` in benches/node (package.json pins it).
const net = require('net');
const crypto = require('crypto');
const Redis = require('ioredis');

const arg = (name, dflt) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const [host, port] = arg('--listen', '127.0.0.1:0').split(':');
const url = arg('--redis', 'redis://127.0.0.1:6379');
const channel = arg('--channel', 'broadcast');
const PREFIX = '[Broadcast] ';
const id = crypto.randomBytes(8).toString('hex');

const pub = new Redis(url);
const sub = new Redis(url);
const clients = new Set();

function toOthers(text, sender) {
  for (const c of clients) {
    if (c !== sender) c.write(text);
  }
}

sub.on('message', (_channel, message) => {
  const bar = message.indexOf('|');
  if (message.slice(0, bar) === id) return;
  toOthers(message.slice(bar + 1), null);
});

const server = net.createServer((socket) => {
  socket.setNoDelay(true);
  socket.setEncoding('utf8');
  clients.add(socket);
  let partial = '';
  socket.on('data', (data) => {
    const lines = (partial + data).split('\n');
    partial = lines.pop();
    if (lines.length === 0) return;
    const text = lines.map((l) => PREFIX + l + '\n').join('');
    toOthers(text, socket);
    pub.publish(channel, id + '|' + text);
  });
  socket.on('error', () => {});
  socket.on('close', () => clients.delete(socket));
});

sub.subscribe(channel).then(() => {
  server.listen(Number(port), host, () => {
    const a = server.address();
    process.stderr.write(`node-redis broadcast listening on ${a.address}:${a.port}\n`);
  });
});
