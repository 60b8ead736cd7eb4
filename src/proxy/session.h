#pragma once
// One proxied connection: the client socket, the upstream socket, and the two pipes between them.
// See session.cpp for the picture.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <uv.h>

#include "toxics/toxic.h"
#include "uv/buffer.h"

namespace faultline::proxy {

class Proxy;
class Runtime;

enum class CloseReason {
  ClientClosed,   // the client closed (FIN), after the upstream also finished
  UpstreamClosed, // Redis closed and the client finished, or the drain time ran out
  ClientReset,
  UpstreamReset,
  ConnectFailed,
  ConnectTimeout,
  ProxyDisabled,
  Dropped,        // DELETE /proxies/{name}/connections
  Toxic,          // a toxic closed or reset it
  AcceptReset,    // the proxy's accept mode resets every connection
  Shutdown,
  Error,
};
std::string_view to_string(CloseReason r);

enum class AcceptMode { Normal, Reset, Hang };

class Session {
public:
  Session(Proxy& proxy, uint64_t id);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  int accept(uv_stream_t* server);
  void start(AcceptMode mode);
  void close(CloseReason r);
  void reset(CloseReason r);
  bool closing() const { return closing_; }

  // Toxics (toxicity is rolled here, once per connection and toxic).
  void add_toxic(const toxics::Toxic& t);
  void remove_toxic(std::string_view name, toxics::Stream s);
  void replace_toxic(const toxics::Toxic& t);

  uint64_t id() const { return id_; }
  const std::string& client_address() const { return client_addr_; }
  uint64_t started_ms() const { return started_ms_; }
  uint64_t bytes_from_client() const;
  uint64_t bytes_from_upstream() const;
  CloseReason close_reason() const { return reason_; }
  Proxy& proxy() { return proxy_; }

  struct Side;
  struct Pipe;
  struct Slot;

private:
  friend struct Pipe;
  friend struct Slot;
  void connect_upstream();
  void on_connected(int status);
  void on_read(Side& side, ssize_t nread, const uv_buf_t* buf);
  void on_read_error(Side& side, int err);
  void on_write_error(Side& side, int err);
  void reset_after_flush(Side& toward, CloseReason r);
  void check_done();
  void insert_stage(Pipe& p, size_t pos, const toxics::Toxic& t);
  void close_handles(bool rst);
  void on_handle_closed();
  Pipe& pipe_from(Side& side);
  Side& peer(Side& side);

  Proxy& proxy_;
  Runtime& rt_;
  uint64_t id_;
  uint64_t started_ms_;
  std::string client_addr_;
  std::unique_ptr<Side> client_;
  std::unique_ptr<Side> upstream_;
  std::unique_ptr<Pipe> up_;   // client → upstream
  std::unique_ptr<Pipe> down_; // upstream → client
  uv_timer_t timer_;           // connect timeout, then drain / reset-after-flush deadline
  uv_connect_t connect_req_;
  bool connected_ = false;
  bool closing_ = false;
  bool reset_pending_ = false;
  CloseReason reason_ = CloseReason::ClientClosed;
  int pending_closes_ = 0;
};

} // namespace faultline::proxy
