// ioredis with every sentinel unreachable (issue 21), driven by a Python test step by step.
// Usage: node sentinels_down.js CONFIG-JSON, {"sentinels": [[host, port], ...], "name": N,
// "window_ms": N}. One JSON line per step:
//   at start: an ioredis client ("open") connects and SETs k 1: {"open": "OK"}
//   on "down" (the test has disabled every sentinel's proxy): open INCRs k; a new client
//   ("fresh", default retry options) is made and sent SET k2 x; after window_ms:
//   {"incr": N, "fresh_status": S, "settled": null or what SET k2 gave, "events": [[ms, msg,
//   n], ...]} (its "error" events since it was made, the same message in a row counted)
//   on "up" (the sentinels enabled again): {"fresh": what SET k2 gave, "after_ms": N (since
//   "up"), "get": GET k through fresh}
const Redis = require("ioredis");

const cfg = JSON.parse(process.argv[2]);
const opts = () => ({
  sentinels: cfg.sentinels.map(([host, port]) => ({ host, port })),
  name: cfg.name,
  connectTimeout: 2000,
});
const say = (v) => console.log(JSON.stringify(v));
const open = new Redis(opts());
open.on("error", () => {});
let fresh = null;
let pending = null;
let settled = null;
const events = [];
let t0 = 0;

process.stdin.setEncoding("utf8");
process.stdin.on("data", async (d) => {
  for (const line of d.split("\n")) {
    if (line === "down") {
      const incr = await open.incr("k");
      t0 = Date.now();
      fresh = new Redis(opts());
      fresh.on("error", (e) => {
        const last = events[events.length - 1];
        if (last && last[1] === e.message) last[2]++;
        else events.push([Date.now() - t0, e.message, 1]);
      });
      pending = fresh.set("k2", "x").then((v) => v, (e) => "error: " + e.message);
      pending.then((v) => { settled = v; });
      setTimeout(() => say({ incr, fresh_status: fresh.status, settled, events }),
        cfg.window_ms);
    }
    if (line === "up") {
      const t = Date.now();
      const v = await pending;
      say({ fresh: v, after_ms: Date.now() - t, get: await fresh.get("k") });
      open.disconnect();
      fresh.disconnect();
      process.exit(0);
    }
  }
});

open.set("k", "1").then((v) => say({ open: v }));
