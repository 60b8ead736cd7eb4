// READONLY: ioredis with reconnectOnError returning 2 reconnects and resends the write.
// Usage: node readonly.js PORT. Prints one JSON line: what the client saw.
const Redis = require("ioredis");

const port = Number(process.argv[2]);
const errors = [];
const redis = new Redis({
  port,
  host: "127.0.0.1",
  reconnectOnError(err) {
    errors.push(err.message);
    // 2: reconnect, then resend the command that got the error.
    return err.message.startsWith("READONLY") ? 2 : false;
  },
  retryStrategy: () => 50,
});
let connects = 0;
redis.on("connect", () => connects++);

(async () => {
  const timer = setTimeout(() => {
    console.log(JSON.stringify({ ok: false, error: "timed out", errors, connects }));
    process.exit(1);
  }, 10000);
  try {
    const reply = await redis.set("fl:ro", "written");
    const value = await redis.get("fl:ro");
    console.log(JSON.stringify({ ok: true, reply, value, errors, connects }));
  } catch (e) {
    console.log(JSON.stringify({ ok: false, error: e.message, errors, connects }));
  } finally {
    clearTimeout(timer);
    redis.disconnect();
  }
})();
