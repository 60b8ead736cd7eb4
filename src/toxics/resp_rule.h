#pragma once
// RESP-aware toxics: decide per request frame instead of per chunk.
//
//   client bytes ─► RequestParser ─► frame ─► [rule 0] [rule 1] ... ─► action
//                                                                    ├ Forward
//                                                                    ├ Inject (reply written by faultline, not forwarded)
//                                                                    ├ DelayRequest / DelayReply
//                                                                    ├ Hang (reply and all later ones never delivered)
//                                                                    └ Reset/Close before forwarding, or after the reply
//
// The filter every RESP-aware toxic carries (commands, keys, probability, first, every, after)
// is parsed and applied here, once, by RespRule; a toxic type only says what happens to a
// matching command. The session applies the action and keeps replies in request order.

#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "resp/commands.h"
#include "resp/parser.h"
#include "resp/writer.h"
#include "toxics/attributes.h"
#include "toxics/registry.h"
#include "toxics/toxic.h"

namespace faultline::toxics {

enum class RespActionKind : uint8_t {
  Forward,
  Inject,       // answer with `reply`, do not forward
  DelayRequest, // hold the request (and everything after it) for delay_ms
  DelayReply,   // forward; hold its reply (and every later one) for delay_ms
  Hang,         // forward; never deliver its reply nor any later one
  ResetBefore,  // RST the connection, request not forwarded (not executed)
  CloseBefore,  // FIN-close the connection, request not forwarded
  ResetAfter,   // forward; when the reply arrives, drop it and RST (executed, reply lost)
  CloseAfter,   // forward; when the reply arrives, drop it and close
  Truncate,     // forward; deliver the first `bytes` bytes of its reply, then RST
  Rewrite,      // forward; its reply names real nodes: collected whole and rewritten (not a
                // toxic's: a deployment's proxy asks for it, proxy/rewriter.h)
};
const char* to_string(RespActionKind k);

struct RespAction {
  RespActionKind kind = RespActionKind::Forward;
  std::string reply;     // Inject: RESP bytes in the session's protocol
  uint64_t delay_ms = 0; // DelayRequest / DelayReply
  uint64_t bytes = 0;    // Truncate
};

// What a rule may know about the session when it decides.
// Where a redirection (resp_error's moved and ask presets, without an address) sends the client:
// in cluster mode the faultline listener of the node that serves the slot, otherwise the
// proxy's own listener, so that a client following it stays behind faultline.
class RedirectTarget {
public:
  virtual ~RedirectTarget() = default;
  virtual std::string redirect_address(unsigned slot) const = 0;
};

struct RespContext {
  resp::Protocol protocol = resp::Protocol::Resp2;
  const RedirectTarget* redirect = nullptr;
  bool in_multi = false;
  bool subscribed = false; // RESP2 pub/sub mode
  bool monitoring = false;
  bool reply_off = false;  // CLIENT REPLY OFF
  std::mt19937_64* rng = nullptr;
};

// Reply-side actions (delay the reply, hang, reset/close after it, truncate it) need a reply
// they can find: none comes with CLIENT REPLY OFF, and in MONITOR and RESP2 pub/sub sessions
// out-of-band lines interleave with replies, so these actions are ignored there.
inline bool no_paired_reply(const RespContext& ctx) {
  return ctx.reply_off || ctx.monitoring || ctx.subscribed;
}

// The shared filter's parameters: every RESP-aware type's table includes their attributes
// (filter_attrs(), declared once in resp_rule.cpp; see with_filter below).
struct FilterParams {
  std::optional<std::vector<std::string>> commands; // not given: every command, or the type's set
  std::string keys;                                  // Redis glob on the first key
  double probability = 1.0;                          // per matching command
  int64_t first = 0, every = 0, after = 0;
};
const AttrTable<FilterParams>& filter_attrs();

// The shared filter, compiled from its parameters: the commands it names as one bit per command
// of the table, and the counters behind first/every/after.
class RespFilter {
public:
  // Throws ToxicError for an unknown "@category".
  explicit RespFilter(FilterParams p);
  // The same, from JSON attributes (parsed by filter_attrs()).
  explicit RespFilter(const nlohmann::json& attrs);
  // Counts a match and applies first/every/after/probability. Mutates the counters.
  bool matches(const resp::RequestFrame& f, std::mt19937_64& rng) const {
    return selects(f) && passes(f, rng);
  }
  // Whether `commands` names this command: one bit for a command the table knows (computed
  // once for the whole table), the names as text otherwise. No side effect.
  bool selects(const resp::RequestFrame& f) const {
    if (f.cmd != nullptr && f.cmd->sub_count == 0 && f.cmd->id < selected_.size())
      return selected_[f.cmd->id];
    return command_matches(f);
  }
  // The rest of matches() for a command selects() accepted: keys, then the counters.
  bool passes(const resp::RequestFrame& f, std::mt19937_64& rng) const;
  // commands/keys/probability/first/every/after as JSON, added to `out`.
  void to_json(nlohmann::json& out) const;
  uint64_t matched() const { return matched_; }
  uint64_t seen() const { return seen_; } // commands that passed commands/keys
  bool names_command(std::string_view upper_name, std::string_view upper_sub) const;

private:
  struct Entry {
    std::string name; // upper-cased
    std::string sub;  // upper-cased, may be empty
    uint32_t category = 0; // resp::Category bits for "@..." entries
  };
  bool command_matches(const resp::RequestFrame& f) const;
  bool entry_matches(const Entry& e, const resp::CommandInfo& c) const;
  std::vector<Entry> commands_;
  std::vector<bool> selected_; // by CommandInfo::id, for leaf entries of the table
  FilterParams p_;
  mutable uint64_t seen_ = 0;    // commands that passed commands/keys
  mutable uint64_t matched_ = 0; // commands that also passed first/every/after/probability
};

// Redis's glob (stringmatchlen): *, ?, [abc], [^a-z], \x. Linear in practice: one backtrack
// point (the last '*'), so a pattern from the API cannot make the data path exponential.
bool glob_match(std::string_view pattern, std::string_view text, bool nocase = false);

class RespRule {
public:
  explicit RespRule(RespFilter filter) : filter_(std::move(filter)) {}
  virtual ~RespRule() = default;
  // The action for a request, or Forward when the filter does not match. Handshake commands
  // (AUTH, HELLO, CLIENT SETNAME/SETINFO, SELECT) never match unless the filter names them.
  RespAction decide(const resp::RequestFrame& f, const RespContext& ctx) const;
  // Commands the filter's commands/keys selected (in a mode where the type applies), and
  // those the toxic acted on (after first/every/after/probability).
  uint64_t matched() const { return filter_.seen(); }
  uint64_t injected() const { return injected_; }
  const RespFilter& filter() const { return filter_; }

protected:
  // Whether the type makes sense for this command in this session's mode (pub/sub, MONITOR,
  // CLIENT REPLY OFF, MULTI). Asked before the filter, so an ignored command consumes neither
  // the first/every/after counts nor a random draw.
  virtual bool applies(const resp::RequestFrame&, const RespContext&) const { return true; }
  // What happens to a matching command.
  virtual RespAction act(const resp::RequestFrame& f, const RespContext& ctx) const = 0;

private:
  RespFilter filter_;
  mutable uint64_t injected_ = 0;
};

} // namespace faultline::toxics

namespace faultline::toxics {

// Base of every RESP-aware toxic type: parameters P (with the filter's in P::filter), its JSON
// from the type's table plus the two counters.
template <class P> class RespToxic : public ParamToxic<P>, public RespRule {
public:
  RespToxic(P p, const AttrTable<P>& attrs)
      : ParamToxic<P>(std::move(p), attrs), RespRule(RespFilter(this->p_.filter)) {}
  nlohmann::json attributes() const override {
    nlohmann::json a = ParamToxic<P>::attributes();
    a["matched"] = matched();
    a["injected"] = injected();
    return a;
  }
  std::unique_ptr<Stage> make_stage(Output&) const override { return nullptr; }
  const RespRule* resp_rule() const override { return this; }
};

// A RESP-aware type's attribute table: its own attributes, then the shared filter's.
template <class P> AttrTable<P> with_filter(std::initializer_list<Attr<P>> own) {
  AttrTable<P> t(own);
  t.include(filter_attrs(), &P::filter, true);
  t.output_only({"matched", "injected"}); // RespToxic::attributes()
  return t;
}

} // namespace faultline::toxics
