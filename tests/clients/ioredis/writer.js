// ioredis writing in a loop to a whole deployment (issue 21), driven by a Python test.
// Usage: node writer.js CONFIG-JSON
//   {"cluster": [[host, port], ...]}              ioredis's Cluster with these startup nodes
//   {"sentinels": [[host, port], ...], "name": N} ioredis with sentinels, master N
//   "tags": optional list of key prefixes: every other write goes to "<tag>:<i>" (hash tags,
//   so that writes hit chosen slots); "wait": replicas a write must reach (WAIT n 1000) to
//   count as acknowledged (0: the OK of SET is enough).
// Prints {"acked": N} lines while it writes; on "stop" on stdin, one last line:
// {"ok": true, "acked": {key: value}, "unconfirmed": N, "errors": [...], "nodes": [...]}.
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
client.on("error", (e) => errors.push("event: " + e.message));

const acked = {};
let unconfirmed = 0;
let stopping = false;
const tags = cfg.tags || [];

process.stdin.setEncoding("utf8");
process.stdin.on("data", (d) => {
  if (d.includes("stop")) stopping = true;
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
    const key = tags.length && i % 2 ? `${tags[(i >> 1) % tags.length]}:${i}` : `w:${i}`;
    try {
      const reply = await client.set(key, String(i));
      if (reply === "OK") {
        if (cfg.wait && (await client.call("WAIT", String(cfg.wait), "1000")) < cfg.wait) {
          unconfirmed++;
        } else {
          acked[key] = String(i);
          if (++n % 50 === 0) console.log(JSON.stringify({ acked: n }));
        }
      }
    } catch (e) {
      errors.push(e.message);
      await new Promise((r) => setTimeout(r, 20));
    }
    i++;
  }
  const result = JSON.stringify({ ok: true, acked, unconfirmed, errors, nodes: address() });
  client.disconnect();
  // Exit once the whole line is out: a pipe takes it in pieces, and exit() would cut it.
  process.stdout.write(result + "\n", () => process.exit(0));
})();
