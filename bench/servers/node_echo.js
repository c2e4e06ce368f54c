// Node.js `net` echo server (and `dgram` for --udp), the peer from another runtime.
//   node node_echo.js [--port P] [--unix PATH] [--udp]
// Prints "listening on 127.0.0.1:PORT" (or "listening on unix:PATH"); stops on SIGTERM/SIGINT.
'use strict';
const net = require('net');
const dgram = require('dgram');
const fs = require('fs');

let port = 0, unixPath = null, udp = false;
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === '--port') port = parseInt(argv[++i], 10);
  else if (argv[i] === '--unix') unixPath = argv[++i];
  else if (argv[i] === '--udp') udp = true;
  else { console.error('usage: node_echo.js [--port P] [--unix PATH] [--udp]'); process.exit(2); }
}

let server;
if (udp) {
  server = dgram.createSocket('udp4');
  server.on('message', (msg, rinfo) => server.send(msg, rinfo.port, rinfo.address));
  server.bind(port, '127.0.0.1', () => {
    process.stdout.write(`listening on 127.0.0.1:${server.address().port}\n`);
  });
} else {
  server = net.createServer({ noDelay: true }, (sock) => {
    sock.setNoDelay(true);
    sock.on('data', (data) => sock.write(data));
    sock.on('error', () => sock.destroy());
  });
  const onListening = () => {
    const where = unixPath ? `unix:${unixPath}` : `127.0.0.1:${server.address().port}`;
    process.stdout.write(`listening on ${where}\n`);
  };
  if (unixPath) {
    try { fs.unlinkSync(unixPath); } catch (e) { /* not there */ }
    server.listen({ path: unixPath, backlog: 4096 }, onListening);
  } else {
    server.listen({ port, host: '127.0.0.1', backlog: 4096 }, onListening);
  }
}
for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    if (unixPath) { try { fs.unlinkSync(unixPath); } catch (e) { /* gone */ } }
    process.exit(0);
  });
}
