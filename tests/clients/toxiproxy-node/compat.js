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

async function rawPost(path, body) {
  const res = await fetch(`${API}${path}`, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() };
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

// Where Toxiproxy 2.12's answers are specific (api.go, proxy.go, proxy_collection.go): the
// request id, the listen address as bound, Go's listen error, noop, the slicer's bounds,
// /populate's partial failure, and faultline's refusal of an unknown attribute. The client
// reports only the status of an error, so bodies are read with fetch.
async function wireChecks(toxiproxy) {
  const res = await fetch(`${API}/proxies/no-such-proxy`);
  const id = res.headers.get("x-toxiproxy-request-id");
  check(/^[0-9a-v]{20}$/.test(id || ""), `X-Toxiproxy-Request-Id: ${id}`);
  step(`request id ${id}`);

  const port = await freePort();
  const named = await toxiproxy.createProxy({ name: "wire", listen: `localhost:${port}`, upstream: UPSTREAM });
  check(named.listen === `127.0.0.1:${port}`, `listen reads back as bound: ${named.listen}`);
  await expectPong(named.listen, 500);
  step(`localhost:${port} reads back as ${named.listen}`);

  const taken = `listen tcp ${UPSTREAM}: bind: address already in use`;
  await expectRejects(toxiproxy.createProxy({ name: "taken", listen: UPSTREAM, upstream: UPSTREAM }),
    500, "port in use");
  let r = await rawPost("/proxies", { name: "taken", listen: UPSTREAM, upstream: UPSTREAM });
  check(r.status === 500 && r.body.error === taken && r.body.status === 500,
    `port in use answers Go's error: ${JSON.stringify(r)}`);
  step(`port in use: ${r.body.error}`);

  await named.addToxic({ type: "noop", stream: "upstream", toxicity: 1, attributes: {} });
  await named.addToxic({ type: "slicer", attributes: { average_size: 4, size_variation: 4, delay: 0 } });
  await expectPong(named.listen, 500);
  step("noop and a slicer with size_variation == average_size: PING answered");

  await expectRejects(named.addToxic({ type: "latency", attributes: { latncy: 300 } }), 400,
    "unknown attribute");
  r = await rawPost("/proxies/wire/toxics", { type: "latency", attributes: { latncy: 300 } });
  check(r.status === 400 &&
    r.body.error === "bad request body: unknown attribute 'latncy': latency takes latency, jitter",
    `unknown attribute: ${JSON.stringify(r)}`);
  step(`unknown attribute: ${r.body.error}`);

  // An unchanged proxy is kept (toxics and all); a failure keeps what was done before it.
  const kept = await toxiproxy.populate([{ name: "wire", listen: named.listen, upstream: UPSTREAM }]);
  check(kept.wire && kept.wire.listen === named.listen, "populate answers the proxy kept");
  r = await rawPost("/populate", [
    { name: "wire", listen: `localhost:${port}`, upstream: UPSTREAM },
    { name: "wire2", listen: "127.0.0.1:0", upstream: UPSTREAM },
    { name: "wire3", listen: UPSTREAM, upstream: UPSTREAM },
    { name: "wire4", listen: "127.0.0.1:0", upstream: UPSTREAM },
  ]);
  check(r.status === 500 && r.body.error === taken && r.body.status === 500,
    `populate onto a port in use: ${JSON.stringify(r.body.error)}`);
  check(r.body.proxies.map((p) => p.name).join() === "wire,wire2", `done before the failure: ${JSON.stringify(r.body)}`);
  check(r.body.proxies[0].toxics.length === 2, "an unchanged proxy keeps its toxics");
  const all = await toxiproxy.getAll();
  check(all.wire2 && !all.wire3 && !all.wire4, `after a failed populate: ${Object.keys(all)}`);
  r = await rawPost("/populate", [{ name: "wire5", upstream: UPSTREAM }, { name: "wire6" }]);
  check(r.status === 400 && r.body.error === "missing required field: upstream at proxy 2",
    `populate without an upstream: ${JSON.stringify(r.body)}`);
  check(!(await toxiproxy.getAll()).wire5, "nothing created when an entry lacks its upstream");
  step("populate: in order, what was done before a failure is kept");

  await named.remove();
  await all.wire2.remove();
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

  await wireChecks(toxiproxy);

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
