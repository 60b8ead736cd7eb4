// ioredis writing in a loop to a whole deployment (issue 21), driven by a Python test.
// Usage: node writer.js CONFIG-JSON
//   {"cluster": [[host, port], ...]}              ioredis's Cluster with these startup nodes
//   {"sentinels": [[host, port], ...], "name": N} ioredis with sentinels, master N
//   "tags": optional list of key prefixes: every other write goes to "<tag>:<i>" (hash tags,
//   so that writes hit chosen slots); "wait": replicas a write must reach (WAIT n 1000) to
//   count as acknowledged (0: the OK of SET is enough); "overwrite": true, every write goes to
//   tags[i % n] itself (the same keys again and again; "acked" holds the last value of each);
//   "trace": true, the result also has "timeline": [[ms, what, n, last_ms], ...] in order,
//   what being the listener an acknowledgement came from ("host:port") or an error's message,
//   n how many in a row, ms and last_ms the wall-clock times (Date.now()) of the first and last
//   of them; and the {"acked": N} lines carry "node", the listener of the last one.
// Prints {"acked": N} lines while it writes (N: acknowledgements so far); on "mark" on stdin,
// {"mark": {"errors": [...], "events": [...], "longest_pause_ms": N, "unconfirmed": N}}: the
// errors that reached the application, the client's "error" events, the longest time without
// an acknowledgement and the writes WAIT did not confirm, since the previous mark; on "stop", one
// last line:
// {"ok": true, "acked": {key: value}, "unconfirmed": N, "unconfirmed_keys": {key: value},
//  "errors": [...], "nodes": [...]}.
const Redis = require("ioredis");

const cfg = JSON.parse(process.argv[2]);
const errors = [];
let client;
if (cfg.cluster) {
  client = new Redis.Cluster(
    cfg.cluster.map(([host, port]) => ({ host, port })),
    { redisOptions: { connectTimeout: 2000 }, retryDelayOnFailover: 100, retryDelayOnMoved: 0 },
  );
} else {
  client = new Redis({
    sentinels: cfg.sentinels.map(([host, port]) => ({ host, port })),
    name: cfg.name,
    connectTimeout: 2000,
    retryStrategy: () => 50,
  });
}
client.on("error", (e) => {
  errors.push("event: " + e.message);
  trace("event: " + e.message);
});

const acked = {};
const timeline = [];
function trace(what) {
  if (!cfg.trace) return;
  const last = timeline[timeline.length - 1];
  const now = Date.now();
  if (last && last[1] === what) {
    last[2]++;
    last[3] = now;
  } else timeline.push([now, what, 1, now]);
}
let unconfirmed = 0;
let stopping = false;
const tags = cfg.tags || [];

process.stdin.setEncoding("utf8");
const unconfirmedKeys = {};
let markUnconfirmed = 0; // unconfirmed at the last mark
let markErrors = 0; // errors.length at the last mark
let lastAck = Date.now();
let longestPause = 0;
process.stdin.on("data", (d) => {
  for (const line of d.split("\n")) {
    if (line === "stop") stopping = true;
    if (line === "mark") {
      const now = Date.now();
      const mark = {
        errors: errors.slice(markErrors).filter((e) => !e.startsWith("event: ")),
        events: errors.slice(markErrors).filter((e) => e.startsWith("event: ")),
        longest_pause_ms: Math.max(longestPause, now - lastAck),
        unconfirmed: unconfirmed - markUnconfirmed,
      };
      markUnconfirmed = unconfirmed;
      markErrors = errors.length;
      longestPause = 0;
      lastAck = now;
      console.log(JSON.stringify({ mark }));
    }
  }
});

function address() {
  if (cfg.cluster) return client.nodes("all").map((n) => `${n.options.host}:${n.options.port}`);
  const s = client.stream;
  return s ? [`${s.remoteAddress}:${s.remotePort}`] : [];
}

(async () => {
  let i = 0;
  let n = 0;
  while (!stopping) {
    let key = tags.length && i % 2 ? `${tags[(i >> 1) % tags.length]}:${i}` : `w:${i}`;
    if (cfg.overwrite) key = tags[i % tags.length];
    try {
      const reply = await client.set(key, String(i));
      if (reply === "OK") {
        if (cfg.wait && (await client.call("WAIT", String(cfg.wait), "1000")) < cfg.wait) {
          unconfirmed++;
          unconfirmedKeys[key] = String(i);
        } else {
          acked[key] = String(i);
          if (cfg.trace) trace(address()[0]);
          const now = Date.now();
          longestPause = Math.max(longestPause, now - lastAck);
          lastAck = now;
          if (++n % 50 === 0) {
            const line = cfg.trace ? { acked: n, node: address()[0] } : { acked: n };
            console.log(JSON.stringify(line));
          }
        }
      }
    } catch (e) {
      errors.push(e.message);
      trace(e.message);
      await new Promise((r) => setTimeout(r, 20));
    }
    i++;
  }
  const result = JSON.stringify({
    ok: true, acked, unconfirmed, unconfirmed_keys: unconfirmedKeys, errors, nodes: address(),
    ...(cfg.trace ? { timeline } : {}),
  });
  client.disconnect();
  // Exit once the whole line is out: a pipe takes it in pieces, and exit() would cut it.
  process.stdout.write(result + "\n", () => process.exit(0));
})();
