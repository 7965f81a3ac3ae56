// A node-opcua server that gridctl's OPC-UA driver is tested against (a stack nobody here wrote).
//
//   node tests/peers/opcua_server.js '<json options>'
//
// Options: port (0: any free one), pkiDir (certificate stores; nothing goes to ~/.config),
// namespaceUri, certificateFile + privateKeyFile + applicationUri (the server's own; without them
// node-opcua generates a certificate, which is slow), secure (offer only Basic256Sha256
// SignAndEncrypt) and trustedClientCertificate (PEM file of a client certificate to accept).
// Prints "READY <port>" once listening; stops on SIGTERM or when stdin closes.
"use strict";

const fs = require("fs");
const path = require("path");
const nodeModules = path.join(__dirname, "node", "node_modules");
const {
    OPCUAServer,
    OPCUACertificateManager,
    Variant,
    DataType,
    StatusCodes,
    MessageSecurityMode,
    SecurityPolicy,
} = require(path.join(nodeModules, "node-opcua"));

const options = JSON.parse(process.argv[2] || "{}");

async function main() {
    const pkiDir = options.pkiDir;
    if (!pkiDir) throw new Error("pkiDir is required");
    const serverCertificateManager = new OPCUACertificateManager({
        rootFolder: path.join(pkiDir, "server"),
        automaticallyAcceptUnknownCertificate: false,
    });
    const userCertificateManager = new OPCUACertificateManager({
        rootFolder: path.join(pkiDir, "user"),
        automaticallyAcceptUnknownCertificate: false,
    });
    await serverCertificateManager.initialize();
    await userCertificateManager.initialize();
    const secured = Boolean(options.secure);
    if (options.trustedClientCertificate) {
        const pem = fs.readFileSync(options.trustedClientCertificate, "utf8");
        const base64 = pem.replace(/-----(BEGIN|END) CERTIFICATE-----/g, "").replace(/\s+/g, "");
        await serverCertificateManager.trustCertificate(Buffer.from(base64, "base64"));
    }

    const server = new OPCUAServer({
        port: options.port,
        host: "127.0.0.1",
        hostname: "127.0.0.1",
        resourcePath: "/gridctl/peer",
        serverCertificateManager,
        userCertificateManager,
        certificateFile: options.certificateFile,
        privateKeyFile: options.privateKeyFile,
        serverInfo: options.applicationUri ? { applicationUri: options.applicationUri } : undefined,
        securityPolicies: secured ? [SecurityPolicy.Basic256Sha256] : [SecurityPolicy.None],
        securityModes: secured ? [MessageSecurityMode.SignAndEncrypt] : [MessageSecurityMode.None],
        allowAnonymous: true,
        registerServerMethod: 1, // hidden: no discovery server, no mDNS
    });
    await server.initialize();

    const addressSpace = server.engine.addressSpace;
    const namespace = addressSpace.registerNamespace(options.namespaceUri || "urn:gridctl:test:node-opcua");
    const device = namespace.addObject({ organizedBy: addressSpace.rootFolder.objects, browseName: "hvac" });

    function variable(id, dataType, value, writable) {
        return namespace.addVariable({
            componentOf: device,
            nodeId: `s=${id}`,
            browseName: id,
            dataType,
            accessLevel: writable ? "CurrentRead | CurrentWrite" : "CurrentRead",
            userAccessLevel: writable ? "CurrentRead | CurrentWrite" : "CurrentRead",
            minimumSamplingInterval: 50,
            value: new Variant({ dataType: DataType[dataType], value }),
        });
    }

    variable("hvac.supply_temp", "Double", 18.25, false);
    variable("hvac.setpoint", "Float", 20.5, true);
    variable("hvac.enabled", "Boolean", false, true);
    variable("hvac.mode", "Int16", 1, true);
    variable("hvac.fan_speed", "UInt16", 300, true);
    variable("hvac.runtime_s", "UInt32", 3600, true);
    variable("hvac.energy_wh", "Int64", 123456789, true);
    variable("hvac.flow", "Double", 1.5, true);
    variable("hvac.label", "String", "AHU-1", true);

    const ticks = variable("hvac.ticks", "UInt32", 0, false);
    let tick = 0;
    const ticker = setInterval(() => {
        tick += 1;
        ticks.setValueFromSource({ dataType: DataType.UInt32, value: tick });
    }, 100);

    const faulty = variable("hvac.sensor", "Double", 0, false);
    faulty.setValueFromSource({ dataType: DataType.Double, value: 0 }, StatusCodes.BadSensorFailure);
    const uncertain = variable("hvac.uncertain", "Double", 7.5, false);
    uncertain.setValueFromSource({ dataType: DataType.Double, value: 7.5 }, StatusCodes.UncertainLastUsableValue);

    // Accepts 0..100 only, as a device with its own range check would.
    let limited = 10;
    namespace.addVariable({
        componentOf: device,
        nodeId: "s=hvac.damper_pct",
        browseName: "hvac.damper_pct",
        dataType: "Int16",
        accessLevel: "CurrentRead | CurrentWrite",
        userAccessLevel: "CurrentRead | CurrentWrite",
        minimumSamplingInterval: 50,
        value: {
            get: () => new Variant({ dataType: DataType.Int16, value: limited }),
            set: (variant) => {
                if (variant.value < 0 || variant.value > 100) return StatusCodes.BadOutOfRange;
                limited = variant.value;
                return StatusCodes.Good;
            },
        },
    });

    await server.start();
    process.stdout.write(`READY ${server.endpoints[0].port}\n`);

    let stopping = false;
    async function stop() {
        if (stopping) return;
        stopping = true;
        clearInterval(ticker);
        await server.shutdown(0);
        process.exit(0);
    }
    process.on("SIGTERM", stop);
    process.on("SIGINT", stop);
    process.stdin.on("end", stop);
    process.stdin.resume();
}

main().catch((err) => {
    process.stderr.write(`opcua peer failed: ${err && err.stack ? err.stack : err}\n`);
    process.exit(1);
});
