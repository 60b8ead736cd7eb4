#pragma once
// The one interface through which the rest of the program (traffic log, metrics, client
// verdicts) learns what sessions do. Observers are registered on the Runtime; with none
// registered the data path pays one empty-vector check per frame.

#include <string_view>

#include "proxy/pairing.h"
#include "resp/parser.h"
#include "toxics/toxic.h"

namespace faultline::proxy {

class Session;

class SessionObserver {
public:
  virtual ~SessionObserver() = default;
  virtual void on_session_open(Session& s) {}
  virtual void on_session_close(Session& s) {}
  // A request frame, forwarded to Redis or answered by faultline. `fault` names the toxic
  // that acted on it (empty if none). `id` is the pairing id its reply will carry.
  virtual void on_request(Session& s, const resp::RequestFrame& f, PendingId id,
                          std::string_view fault) {}
  // A reply paired with its request. `frame` is null when faultline wrote the reply itself;
  // `injected` then holds its bytes. `fault` names the toxic that acted (empty if none).
  virtual void on_reply(Session& s, const ReplyResult& r, const resp::ReplyFrame* frame,
                        std::string_view injected, std::string_view fault) {}
  // Pushes, pub/sub messages, MONITOR lines and replies with no pending request.
  virtual void on_out_of_band(Session& s, const ReplyResult& r, const resp::ReplyFrame& f) {}
  // Parsing of one direction stopped (bytes keep flowing untouched).
  virtual void on_raw_mode(Session& s, toxics::Stream dir, const resp::ParseError& e) {}
};

} // namespace faultline::proxy
