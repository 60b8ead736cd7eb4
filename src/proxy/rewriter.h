#pragma once
// What a whole deployment (src/topology: a Redis Cluster or Sentinel fronted node by node) does
// to the replies that name its nodes. Redis hands clients the real addresses of its nodes (CLUSTER
// SLOTS, MOVED, Sentinel's answers...); a client that connected to them would leave the proxy
// behind. A proxy with a rewriter has every such reply collected whole, given to rewrite(), and
// the result delivered in its place (RespFaults, the Rewrite action).
//
// The proxy layer only asks; what the kinds mean and how replies are rewritten is the
// rewriter's. Kind 0 is "nothing to do"; kRedirectOnly is an error reply that may be a MOVED or
// ASK: on a proxy that rewrites redirections (Proxy::set_rewriter(r, _, true): a cluster node's),
// no request is flagged for it; every error reply is offered as it arrives (an error split
// across reads is collected from its first byte), and replies that are not errors stream
// untouched on the fast path. kMessage is an out-of-band frame (a pub/sub message, a RESP3 push) on
// a proxy that rewrites them (Proxy::set_rewriter(r, true): a sentinel's, whose events name
// nodes); while such a session is subscribed, every frame is collected whole and offered.

#include <cstdint>
#include <string>
#include <string_view>

namespace faultline::resp {
struct RequestFrame;
struct CommandInfo;
}
namespace faultline::toxics {
struct Toxic;
}

namespace faultline::proxy {

class ReplyRewriter {
public:
  static constexpr uint8_t kNone = 0;
  static constexpr uint8_t kRedirectOnly = 1;
  static constexpr uint8_t kMessage = 2;

  virtual ~ReplyRewriter() = default;
  // Which rewrite the reply to f needs.
  virtual uint8_t kind(const resp::RequestFrame& f) const = 0;
  // Whether kind() may be other than kNone for a command of this table entry (nullptr: not
  // in the table): the others stay on the fast path without a frame being built.
  virtual bool may_rewrite(const resp::CommandInfo* c) const = 0;
  // A whole reply of that kind (for kRedirectOnly, an error frame): true with `out` set to what
  // the client gets instead; false to deliver it as it came.
  virtual bool rewrite(uint8_t kind, std::string_view frame, std::string& out) = 0;
  // A reply too large to collect went on as it came (once per occurrence).
  virtual void too_large(uint8_t kind, size_t bytes) = 0;
  // The listener ("host:port") of the node that serves `slot`, for the moved and ask presets;
  // empty when not known.
  virtual std::string address_for_slot(unsigned slot) const = 0;
  // Toxics that act through the rewriter (ToxicImpl::needs_deployment): why this proxy cannot
  // take `t` (empty: it can), and that it was added or changed (the rewriter notes what it needs
  // then; it looks at the proxy's toxics to know whether `t` is still there).
  virtual std::string refuses_toxic(const toxics::Toxic& t) const;
  virtual void toxic_added(const toxics::Toxic&) {}
};

} // namespace faultline::proxy
