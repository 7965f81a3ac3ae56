'use strict';
// A Modbus register image built from a list of points with Node's own Buffer codecs, so gridctl's
// codec is checked against an independent implementation. Point:
//   {id, table: coil|discrete_input|holding_register|input_register, address, type, word_order,
//    byte_order, value}   (64-bit integers as decimal strings)

const SIZES = { int16: 2, uint16: 2, int32: 4, uint32: 4, float32: 4, int64: 8, uint64: 8, float64: 8 };

function bigEndianBytes(type, value) {
  const bytes = Buffer.alloc(SIZES[type]);
  switch (type) {
    case 'int16': bytes.writeInt16BE(value); break;
    case 'uint16': bytes.writeUInt16BE(value); break;
    case 'int32': bytes.writeInt32BE(value); break;
    case 'uint32': bytes.writeUInt32BE(value); break;
    case 'float32': bytes.writeFloatBE(value); break;
    case 'float64': bytes.writeDoubleBE(value); break;
    case 'int64': bytes.writeBigInt64BE(BigInt(value)); break;
    case 'uint64': bytes.writeBigUInt64BE(BigInt(value)); break;
    default: throw new Error(`unknown type ${type}`);
  }
  return bytes;
}

function fromBigEndianBytes(type, bytes) {
  switch (type) {
    case 'int16': return bytes.readInt16BE();
    case 'uint16': return bytes.readUInt16BE();
    case 'int32': return bytes.readInt32BE();
    case 'uint32': return bytes.readUInt32BE();
    case 'float32': return bytes.readFloatBE();
    case 'float64': return bytes.readDoubleBE();
    case 'int64': return bytes.readBigInt64BE().toString();
    case 'uint64': return bytes.readBigUInt64BE().toString();
    default: throw new Error(`unknown type ${type}`);
  }
}

// Device layout <-> big-endian value bytes: swap the bytes of each word, then the order of the words.
function reorder(bytes, wordOrder, byteOrder) {
  const words = [];
  for (let i = 0; i < bytes.length; i += 2) {
    const word = Buffer.from(bytes.subarray(i, i + 2));
    if (byteOrder === 'little') word.reverse();
    words.push(word);
  }
  if (wordOrder === 'little') words.reverse();
  return Buffer.concat(words);
}

class RegisterImage {
  constructor(points, size = 1024) {
    this.points = points;
    this.holding = Buffer.alloc(size * 2);
    this.input = Buffer.alloc(size * 2);
    this.coils = Buffer.alloc(size / 8);
    this.discrete = Buffer.alloc(size / 8);
    for (const point of points) this.store(point, point.value);
  }

  registers(table) {
    return table === 'input_register' ? this.input : this.holding;
  }

  bits(table) {
    return table === 'discrete_input' ? this.discrete : this.coils;
  }

  store(point, value) {
    if (point.table === 'coil' || point.table === 'discrete_input') {
      this.setBit(this.bits(point.table), point.address, Boolean(value));
      return;
    }
    const bytes = reorder(bigEndianBytes(point.type, value), point.word_order, point.byte_order);
    bytes.copy(this.registers(point.table), point.address * 2);
  }

  load(point) {
    if (point.table === 'coil' || point.table === 'discrete_input') {
      return this.getBit(this.bits(point.table), point.address);
    }
    const start = point.address * 2;
    const raw = this.registers(point.table).subarray(start, start + SIZES[point.type]);
    // Reordering is its own inverse for these layouts.
    return fromBigEndianBytes(point.type, reorder(raw, point.word_order, point.byte_order));
  }

  getBit(buffer, address) {
    return Boolean(buffer[address >> 3] & (1 << (address & 7)));
  }

  setBit(buffer, address, on) {
    if (on) buffer[address >> 3] |= 1 << (address & 7);
    else buffer[address >> 3] &= ~(1 << (address & 7));
  }

  state() {
    const values = {};
    for (const point of this.points) values[point.id] = this.load(point);
    return values;
  }
}

function parseArguments(argv) {
  const [port, points] = [Number(argv[2]), JSON.parse(argv[3])];
  if (!Number.isInteger(port)) throw new Error('usage: node <script> PORT POINTS_JSON');
  return { port, points };
}

function printLine(object) {
  process.stdout.write(`${JSON.stringify(object)}\n`);
}

module.exports = { RegisterImage, parseArguments, printLine };
