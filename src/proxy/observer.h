#pragma once
// The one interface through which the rest of the program (traffic log, metrics, client
// verdicts) learns what sessions do. Observers are registered on the Runtime; with none
// registered the data path pays one empty-vector check per frame.

#include <span>
#include <string_view>

#include "proxy/pairing.h"
#include "resp/parser.h"
#include "toxics/toxic.h"

namespace faultline::proxy {

class Session;

// What became of a reply on its way to the client (SessionObserver::on_delivery).
struct Delivery {
  bool delivered = false;
  uint64_t at_us = 0;       // delivered: when the client's socket took its last byte (uv_hrtime µs)
  bool client_gone = false; // not delivered: the client had left (else faultline cut it)
  // The toxic or fault that held or cut the reply, else (not delivered) why the session ended.
  // Empty for a reply delivered with no toxic in its way.
  std::string_view by;
};

class SessionObserver {
public:
  virtual ~SessionObserver() = default;
  // False for an observer that ignores on_request(): the data path then skips the call for
  // every request frame. Read once, when the observer is added to the Runtime.
  virtual bool wants_requests() const { return true; }
  // True for an observer that takes plain replies in runs (on_plain_replies) instead of one
  // on_reply() each. When every observer does, a session hands over the plain replies of a
  // chunk in one call per observer, grouped by command and latency (PlainReplies), in order
  // with its other events (a run is handed over before any other event of the session). Read
  // once, when the observer is added.
  virtual bool takes_plain_replies() const { return false; }
  virtual void on_plain_replies(Session& s, std::span<const PlainReplies> groups) {}
  // Likewise for requests, when every observer that wants requests takes them in runs: a
  // plain request is one forwarded untouched whose command the table names exactly (with its
  // subcommand, for containers). Asked once per chunk from the client: true when all this
  // observer needs of the chunk's plain requests, in this state of the session, is how many
  // there were (on_plain_requests, before any other event of the session); false to see each
  // frame through on_request().
  virtual bool takes_plain_requests() const { return false; }
  virtual bool plain_requests_now(Session& s) { return false; }
  virtual void on_plain_requests(Session& s, uint64_t n) {}
  // True for an observer that wants to know what became of replies it was shown: a session
  // opened while one is registered counts the bytes written to its client (pipe.h); in
  // on_reply() the observer may then call Session::follow_delivery(), and on_delivery() follows
  // once for that reply (by the session's close at the latest). Read when the observer is added.
  virtual bool wants_delivery() const { return false; }
  virtual void on_delivery(Session& s, PendingId id, const Delivery& d) {}
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
