'use strict';
// A jsmodbus 5 Modbus TCP server on 127.0.0.1 holding the given points.
// Usage: node jsmodbus_server.js PORT POINTS_JSON [REGISTERS]   (PORT 0: any free port)
// REGISTERS (default 1024, a multiple of 8) is the size of each table: jsmodbus answers a read that runs
// past it with the registers it has, short and without an exception, as some devices do past their end.
// Prints {"event":"ready","port":N}, then {"event":"state","values":{...}} after every write.
const net = require('net');
const modbus = require('jsmodbus');
const { RegisterImage, parseArguments, printLine } = require('./modbus_map');

const { port, points } = parseArguments(process.argv);
const image = new RegisterImage(points, process.argv[4] ? Number(process.argv[4]) : undefined);
const netServer = new net.Server();
const server = new modbus.server.TCP(netServer, {
  holding: image.holding, input: image.input, coils: image.coils, discrete: image.discrete,
});
const report = () => setImmediate(() => printLine({ event: 'state', values: image.state() }));
for (const event of ['postWriteSingleRegister', 'postWriteMultipleRegisters', 'postWriteSingleCoil',
  'postWriteMultipleCoils']) {
  server.on(event, (request) => { if (request && request.body) report(); });
}
netServer.listen(port, '127.0.0.1', () => printLine({ event: 'ready', port: netServer.address().port }));
process.on('SIGTERM', () => netServer.close(() => process.exit(0)));
