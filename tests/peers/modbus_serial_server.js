'use strict';
// A modbus-serial 8 ServerTCP on 127.0.0.1 holding the given points at one unit id (it ignores others).
// Usage: node modbus_serial_server.js PORT UNIT_ID POINTS_JSON   (PORT > 0: modbus-serial takes 0 for 502)
// Prints {"event":"ready","port":N}, then {"event":"state","values":{...}} after every write.
const ModbusRTU = require('modbus-serial');
const { RegisterImage, printLine } = require('./modbus_map');

const port = Number(process.argv[2]);
if (!(port > 0)) throw new Error('give a port number above 0');
const unitId = Number(process.argv[3]);
const image = new RegisterImage(JSON.parse(process.argv[4]));
let pending = false;
const report = () => {
  if (pending) return;
  pending = true;
  setImmediate(() => { pending = false; printLine({ event: 'state', values: image.state() }); });
};
const vector = {
  getInputRegister: (address) => image.input.readUInt16BE(address * 2),
  getHoldingRegister: (address) => image.holding.readUInt16BE(address * 2),
  getCoil: (address) => image.getBit(image.coils, address),
  getDiscreteInput: (address) => image.getBit(image.discrete, address),
  setRegister: (address, value) => { image.holding.writeUInt16BE(value, address * 2); report(); },
  setCoil: (address, value) => { image.setBit(image.coils, address, value); report(); },
};
const server = new ModbusRTU.ServerTCP(vector, { host: '127.0.0.1', port, unitID: unitId });
server.on('initialized', () => printLine({ event: 'ready', port: server._server.address().port }));
server.on('serverError', (error) => { console.error(error); process.exit(1); });
process.on('SIGTERM', () => server.close(() => process.exit(0)));
