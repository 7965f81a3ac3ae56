// Reads a BACnet/IP device with @bacnet-js/client, an independent stack, and prints one JSON line.
//
// usage: node bacnet_read.js CLIENT_PORT DEVICE_ADDRESS DEVICE_INSTANCE OBJECTS_JSON [PRIORITY_OBJECTS_JSON]
//   OBJECTS_JSON: [["analog-input", 1], ["binary-output", 2], ...]
//   PRIORITY_OBJECTS_JSON: the objects whose priority-array to read (default: the first output object)
// Output: {"device_name": ..., "max_apdu": ..., "read_property": {"analog-input,1": value, ...},
//          "read_property_multiple": {...}, "priority_array": {"analog-output,1": [...],
//          "analog-value,1": {"error": "..."} for an object without one}}
"use strict";

const path = require("path");
const bacnet = require(path.join(__dirname, "node", "node_modules", "@bacnet-js", "client"));
const Client = bacnet.default;
const { ObjectType, PropertyIdentifier } = bacnet;

const [clientPort, deviceAddress, deviceInstance, objectsJson, priorityJson] = process.argv.slice(2);
const objects = JSON.parse(objectsJson);
const receiver = { address: deviceAddress };

function objectId(name, instance) {
  const type = ObjectType[name.toUpperCase().replace(/-/g, "_")];
  if (type === undefined) throw new Error(`unknown object type ${name}`);
  return { type, instance };
}

function plain(values) {
  // ApplicationData entries: {type, value}; an array property keeps every entry.
  const out = values.map((entry) => (entry && typeof entry === "object" && "value" in entry ? entry.value : entry));
  return out.length === 1 ? out[0] : out;
}

async function main() {
  const client = new Client({ port: Number(clientPort), interface: "127.0.0.1", apduTimeout: 3000 });
  try {
    const device = objectId("device", Number(deviceInstance));
    const name = await client.readProperty(receiver, device, PropertyIdentifier.OBJECT_NAME);
    const maxApdu = await client.readProperty(receiver, device, PropertyIdentifier.MAX_APDU_LENGTH_ACCEPTED);
    const single = {};
    for (const [type, instance] of objects) {
      const result = await client.readProperty(receiver, objectId(type, instance), PropertyIdentifier.PRESENT_VALUE);
      single[`${type},${instance}`] = plain(result.values);
    }
    const specs = objects.map(([type, instance]) => ({
      objectId: objectId(type, instance),
      properties: [{ id: PropertyIdentifier.PRESENT_VALUE, index: 0xffffffff }],
    }));
    const multiple = {};
    const answer = await client.readPropertyMultiple(receiver, specs);
    answer.values.forEach((objectResult, i) => {
      const [type, instance] = objects[i];
      multiple[`${type},${instance}`] = plain(objectResult.values[0].value);
    });
    const priorityArray = {};
    const firstOutput = objects.find(([type]) => type.endsWith("-output"));
    const priorityObjects = priorityJson ? JSON.parse(priorityJson) : firstOutput ? [firstOutput] : [];
    for (const [type, instance] of priorityObjects) {
      try {
        const result = await client.readProperty(receiver, objectId(type, instance), PropertyIdentifier.PRIORITY_ARRAY);
        priorityArray[`${type},${instance}`] = result.values.map((entry) => entry.value);
      } catch (error) {
        priorityArray[`${type},${instance}`] = { error: String(error && error.message ? error.message : error) };
      }
    }
    process.stdout.write(JSON.stringify({
      device_name: plain(name.values),
      max_apdu: plain(maxApdu.values),
      read_property: single,
      read_property_multiple: multiple,
      priority_array: priorityArray,
    }) + "\n");
  } finally {
    client.close();
  }
}

main().catch((error) => {
  process.stderr.write(`${error && error.stack ? error.stack : error}\n`);
  process.exit(1);
});
