// ioredis's Cluster answering commands one at a time, driven by a Python test that breaks nodes
// in between (issue 21: what a cluster client sees when a node is down, cut off, or the cluster
// is down). Default options but one: commandTimeout 3000 ms. Without it a command sent to a
// black-holed node never settles (ioredis sets no timeout of its own), and every later command
// on that connection waits behind it.
// Usage: node cluster_commands.js '[[host, port], ...]'; then one JSON array per stdin line (a
// command), answered by one line: {"ok": reply, "ms": N} or {"error": "Class: message", "ms": N}.
const Redis = require("ioredis");
const readline = require("readline");

const nodes = JSON.parse(process.argv[2]).map(([host, port]) => ({ host, port }));
const client = new Redis.Cluster(nodes, {
  redisOptions: { connectTimeout: 1000, commandTimeout: 3000 },
});
client.on("error", () => {}); // connection errors are expected here; commands report theirs

const rl = readline.createInterface({ input: process.stdin });
let chain = Promise.resolve();
rl.on("line", (line) => {
  if (!line.trim()) return;
  const args = JSON.parse(line);
  chain = chain.then(async () => {
    const t0 = Date.now();
    try {
      const reply = await client.call(...args);
      console.log(JSON.stringify({ ok: reply, ms: Date.now() - t0 }));
    } catch (e) {
      console.log(JSON.stringify({ error: `${e.name}: ${e.message}`, ms: Date.now() - t0 }));
    }
  });
});
rl.on("close", () => chain.then(() => client.disconnect()));
