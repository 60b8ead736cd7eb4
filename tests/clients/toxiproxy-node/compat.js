// Drives faultline with a real Toxiproxy client (toxiproxy-node-client) and checks the effect of
// each call on Redis traffic with a raw socket. Run by tests/integration/toxiproxy_client_test.cpp:
//
//   NODE_PATH=<dir>/node_modules FAULTLINE_API=http://127.0.0.1:8474 \
//   REDIS_UPSTREAM=127.0.0.1:6379 node compat.js
//
// Prints one line per step and "compat: OK" at the end; exits 1 at the first failure.
"use strict";

const net = require("net");
const { Toxiproxy } = require("toxiproxy-node-client");

const API = process.env.FAULTLINE_API;
const UPSTREAM = process.env.REDIS_UPSTREAM;
const PING = "*1\r\n$4\r\nPING\r\n";

function step(msg) {
  console.log(`compat: ${msg}`);
}

function check(cond, msg) {
  if (!cond) throw new Error(`check failed: ${msg}`);
}

function hostPort(listen) {
  const i = listen.lastIndexOf(":");
  return { host: listen.slice(0, i).replace(/^\[|\]$/g, ""), port: Number(listen.slice(i + 1)) };
}

// One PING on a new connection. Resolves {ms, reply} | {ms, error} | {ms, timeout} | {ms, closed}.
function ping(listen, timeoutMs = 3000) {
  return new Promise((resolve) => {
    const { host, port } = hostPort(listen);
    const t0 = Date.now();
    const sock = net.connect({ host, port });
    let buf = "";
    let done = false;
    const finish = (r) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      resolve({ ms: Date.now() - t0, ...r });
    };
    const timer = setTimeout(() => finish({ timeout: true }), timeoutMs);
    sock.setNoDelay(true);
    sock.on("connect", () => sock.write(PING));
    sock.on("data", (d) => {
      buf += d.toString();
      if (buf.includes("\r\n")) finish({ reply: buf });
    });
    sock.on("error", (e) => finish({ error: e.code || String(e) }));
    sock.on("close", () => finish({ closed: true }));
  });
}

async function expectPong(listen, maxMs) {
  const r = await ping(listen);
  check(r.reply === "+PONG\r\n", `PING through ${listen} answered: ${JSON.stringify(r)}`);
  if (maxMs !== undefined) check(r.ms < maxMs, `PING took ${r.ms} ms, expected < ${maxMs}`);
  return r.ms;
}

async function expectRejects(promise, status, what) {
  try {
    await promise;
  } catch (e) {
    check(String(e.message).includes(String(status)), `${what}: ${e.message}`);
    return;
  }
  throw new Error(`${what}: expected a ${status} error`);
}

async function rawGet(path) {
  const res = await fetch(`${API}${path}`);
  return { status: res.status, body: await res.json() };
}

async function main() {
  check(API && UPSTREAM, "FAULTLINE_API and REDIS_UPSTREAM must be set");
  const toxiproxy = new Toxiproxy(API);

  const version = JSON.parse(await toxiproxy.getVersion());
  check(typeof version.version === "string" && version.version.length > 0, "version");
  step(`server version ${version.version}`);

  let proxy = await toxiproxy.createProxy({ name: "compat", listen: "127.0.0.1:0", upstream: UPSTREAM });
  check(proxy.enabled === true, "created proxy is enabled");
  const listen = proxy.listen;
  check(hostPort(listen).port > 0, `listen has a real port: ${listen}`);
  const base = await expectPong(listen, 500);
  step(`proxy created on ${listen}, PING ${base} ms`);

  await expectRejects(
    toxiproxy.createProxy({ name: "compat", listen: "127.0.0.1:0", upstream: UPSTREAM }),
    409, "duplicate proxy");
  await expectRejects(toxiproxy.get("no-such-proxy"), 404, "missing proxy");

  // latency
  const latency = await proxy.addToxic({
    name: "lat", type: "latency", stream: "downstream", toxicity: 1,
    attributes: { latency: 300, jitter: 0 },
  });
  check(latency.name === "lat" && latency.attributes.latency === 300, "latency toxic echoed");
  let ms = (await ping(listen)).ms;
  check(ms >= 290, `PING with 300 ms latency took ${ms} ms`);
  step(`latency toxic: PING ${ms} ms`);
  const updated = await latency.update({ attributes: { latency: 400 }, toxicity: 1 });
  check(updated.attributes.latency === 400 && updated.attributes.jitter === 0, "latency update merged");
  const fetched = await proxy.getToxic("lat");
  check(fetched.attributes.latency === 400, "getToxic shows the update");
  ms = await expectPong(listen);
  check(ms >= 390, `PING with 400 ms latency took ${ms} ms`);
  await latency.remove();
  ms = await expectPong(listen, 250);
  step(`latency removed: PING ${ms} ms`);
  await expectRejects(proxy.getToxic("lat"), 404, "removed toxic");

  // timeout (0 = drop the data forever, as Toxiproxy's does)
  const timeout = await proxy.addToxic({ type: "timeout", attributes: { timeout: 0 } });
  check(timeout.name === "timeout_downstream" && timeout.stream === "downstream", "default toxic name");
  const held = await ping(listen, 700);
  check(held.timeout === true, `PING through a timeout toxic got: ${JSON.stringify(held)}`);
  step("timeout toxic: no reply within 700 ms");
  await timeout.remove();
  await expectPong(listen, 500);
  step("timeout removed: PING answered");

  // disable / enable
  proxy = await proxy.update({ ...proxy.toJson(), enabled: false });
  check(proxy.enabled === false, "proxy disabled");
  const refused = await ping(listen, 2000);
  check(refused.error === "ECONNREFUSED", `connect to a disabled proxy: ${JSON.stringify(refused)}`);
  step("disabled: connect refused");
  proxy = await proxy.update({ ...proxy.toJson(), enabled: true });
  check(proxy.enabled === true && proxy.listen === listen, `re-enabled on ${proxy.listen}`);
  await expectPong(listen, 500);
  step("enabled again: PING answered on the same port");

  // populate, getAll
  const populated = await toxiproxy.populate([
    { name: "compat2", listen: "127.0.0.1:0", upstream: UPSTREAM },
  ]);
  check(populated.compat2 && hostPort(populated.compat2.listen).port > 0, "populate created compat2");
  await expectPong(populated.compat2.listen, 500);
  const all = await toxiproxy.getAll();
  check(all.compat && all.compat2, `getAll lists both: ${Object.keys(all)}`);
  step(`populate and getAll: ${Object.keys(all).sort().join(", ")}`);

  // reset
  await proxy.addToxic({ type: "latency", attributes: { latency: 1000 } });
  await populated.compat2.addToxic({ type: "latency", stream: "upstream", attributes: { latency: 1000 } });
  await populated.compat2.update({ ...populated.compat2.toJson(), enabled: false });
  await toxiproxy.reset();
  const after = await rawGet("/proxies");
  for (const name of ["compat", "compat2"]) {
    check(after.body[name].enabled === true, `${name} enabled after reset`);
    check(after.body[name].toxics.length === 0, `${name} has no toxics after reset`);
  }
  await expectPong(listen, 500);
  await expectPong(populated.compat2.listen, 500);
  step("reset: every proxy enabled, no toxics");

  await proxy.remove();
  await populated.compat2.remove();
  await expectRejects(toxiproxy.get("compat"), 404, "removed proxy");
  const gone = await ping(listen, 2000);
  check(gone.error === "ECONNREFUSED", `connect to a removed proxy: ${JSON.stringify(gone)}`);
  step("proxies removed");
  console.log("compat: OK");
}

main().catch((e) => {
  console.error(`compat: FAILED: ${e.stack || e}`);
  process.exit(1);
});
