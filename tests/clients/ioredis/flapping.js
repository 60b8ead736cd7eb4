// ioredis through a flapping Redis: every command eventually succeeds, and the reconnects
// follow retryStrategy. Usage: node flapping.js PORT SECONDS. Prints one JSON line.
const Redis = require("ioredis");

const port = Number(process.argv[2]);
const seconds = Number(process.argv[3] || 4);
const delays = [];
const redis = new Redis({
  port,
  host: "127.0.0.1",
  // 100, 200, 300, 400, 400... ms between a lost connection and the next attempt.
  retryStrategy(times) {
    const d = Math.min(times * 100, 400);
    delays.push(d);
    return d;
  },
  maxRetriesPerRequest: null, // commands wait for the connection instead of failing
  enableOfflineQueue: true,
});
redis.on("error", () => {}); // reconnects are expected here

(async () => {
  const end = Date.now() + seconds * 1000;
  let sent = 0, ok = 0;
  const failures = [];
  while (Date.now() < end) {
    sent++;
    try {
      await redis.incr("fl:flap");
      ok++;
    } catch (e) {
      failures.push(e.message);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  const value = Number(await redis.get("fl:flap"));
  console.log(JSON.stringify({ sent, ok, failures, value, delays }));
  redis.disconnect();
})();
