// One command to one Redis node (see redis_call.h).

#include "topology/redis_call.h"

#include <charconv>
#include <memory>

#include "resp/parser.h"
#include "uv/address.h"

namespace faultline::topology {

std::string CallResult::redis_error_text() const {
  if (!redis_error()) return {};
  std::string t = reply.substr(1);
  while (!t.empty() && (t.back() == '\n' || t.back() == '\r')) t.pop_back();
  return t;
}

bool bulk_payload(std::string_view reply, std::string& out) {
  if (reply.size() < 4 || (reply[0] != '$' && reply[0] != '=')) return false;
  const size_t eol = reply.find("\r\n");
  if (eol == std::string_view::npos) return false;
  int64_t n = -1;
  auto [p, ec] = std::from_chars(reply.data() + 1, reply.data() + eol, n);
  if (ec != std::errc() || p != reply.data() + eol || n < 0) return false;
  if (reply.size() < eol + 2 + static_cast<size_t>(n)) return false;
  std::string_view body = reply.substr(eol + 2, static_cast<size_t>(n));
  if (reply[0] == '=' && body.size() >= 4) body.remove_prefix(4);  // RESP3 verbatim "txt:"
  out.assign(body);
  return true;
}

namespace {

std::string encode(const std::vector<std::string>& args) {
  std::string out = "*" + std::to_string(args.size()) + "\r\n";
  for (const auto& a : args) {
    out += "$" + std::to_string(a.size()) + "\r\n";
    out += a;
    out += "\r\n";
  }
  return out;
}

// Freed when both handles have closed.
struct Call {
  uv_tcp_t tcp{};
  uv_timer_t timer{};
  uv_connect_t connect{};
  uv_write_t write{};
  std::string out, in;
  resp::ReplyParser parser;
  size_t max_bytes = 0;
  CallDone done;
  CallResult result;
  bool finished = false;
  int open_handles = 2;

  void finish(std::string error) {
    if (finished) return;
    finished = true;
    result.error = std::move(error);
    if (!result.ok()) result.reply.clear();
    uv_timer_stop(&timer);
    auto closed = [](uv_handle_t* h) {
      auto* c = static_cast<Call*>(h->data);
      if (--c->open_handles == 0) {
        // The callback runs after every handle is gone, so it may start another call or stop
        // the loop.
        CallDone d = std::move(c->done);
        CallResult r = std::move(c->result);
        delete c;
        if (d) d(std::move(r));
      }
    };
    uv_close(reinterpret_cast<uv_handle_t*>(&tcp), closed);
    uv_close(reinterpret_cast<uv_handle_t*>(&timer), closed);
  }

  void on_read(const char* data, size_t len) {
    if (in.size() + len > max_bytes) return finish("the reply is larger than the limit");
    in.append(data, len);
    bool whole = false;
    uint64_t end = 0;
    auto st = parser.feed(data, len, [&](const resp::ReplyFrame& f) {
      if (!whole) {
        whole = true;
        end = f.end;
      }
    });
    if (st == resp::Status::Error) return finish("the reply is not RESP");
    if (whole) {
      result.reply = in.substr(0, static_cast<size_t>(end));
      finish({});
    }
  }
};

} // namespace

void call(uv_loop_t* loop, const std::string& address, std::vector<std::string> args,
          uint32_t timeout_ms, CallDone done, size_t max_reply_bytes) {
  auto* c = new Call;
  c->done = std::move(done);
  c->max_bytes = max_reply_bytes;
  c->out = encode(args);
  uv_tcp_init(loop, &c->tcp);
  uv_timer_init(loop, &c->timer);
  c->tcp.data = c->timer.data = c;
  std::string err;
  auto ep = uv::parse_endpoint(address, err);
  sockaddr_storage ss{};
  if (!ep || !uv::literal_address(*ep, ss)) {
    // Reported from the loop, like every other outcome.
    c->result.error = ep ? address + ": not an IP address" : address + ": " + err;
    uv_timer_start(&c->timer, [](uv_timer_t* t) {
      auto* k = static_cast<Call*>(t->data);
      std::string e = std::move(k->result.error);
      k->finish(std::move(e));
    }, 0, 0);
    return;
  }
  uv_timer_start(&c->timer, [](uv_timer_t* t) { static_cast<Call*>(t->data)->finish("timed out"); },
                 timeout_ms, 0);
  c->connect.data = c;
  int rc = uv_tcp_connect(&c->connect, &c->tcp, reinterpret_cast<const sockaddr*>(&ss),
                          [](uv_connect_t* req, int status) {
    auto* k = static_cast<Call*>(req->data);
    if (k->finished) return;
    if (status != 0) return k->finish(uv_strerror(status));
    uv_buf_t b = uv_buf_init(k->out.data(), static_cast<unsigned>(k->out.size()));
    k->write.data = k;
    int wrc = uv_write(&k->write, reinterpret_cast<uv_stream_t*>(&k->tcp), &b, 1,
                       [](uv_write_t* w, int st) {
      auto* kk = static_cast<Call*>(w->data);
      if (st != 0 && !kk->finished) kk->finish(uv_strerror(st));
    });
    if (wrc != 0) return k->finish(uv_strerror(wrc));
    uv_read_start(reinterpret_cast<uv_stream_t*>(&k->tcp),
                  [](uv_handle_t*, size_t, uv_buf_t* buf) {
                    static char block[64 * 1024];
                    *buf = uv_buf_init(block, sizeof block);
                  },
                  [](uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
                    auto* kk = static_cast<Call*>(s->data);
                    if (kk->finished) return;
                    if (n < 0) return kk->finish(n == UV_EOF ? "the connection closed before the reply"
                                                             : uv_strerror(static_cast<int>(n)));
                    if (n > 0) kk->on_read(buf->base, static_cast<size_t>(n));
                  });
  });
  if (rc != 0) {
    c->result.error = uv_strerror(rc);
    uv_timer_start(&c->timer, [](uv_timer_t* t) {
      auto* k = static_cast<Call*>(t->data);
      std::string e = std::move(k->result.error);
      k->finish(std::move(e));
    }, 0, 0);
  }
}

} // namespace faultline::topology
