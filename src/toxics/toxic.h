#pragma once
// The toxic interface: a named, typed fault on one stream of one proxy.
//
//   Toxic (immutable parameters, shared by every session of the proxy)
//     └─ make_stage() ─► Stage (per session, per direction: the toxic's small state)
//
// A session's pipe runs its stages in the order the toxics were added:
//
//   socket read ─► [stage 0] ─► [stage 1] ─► ... ─► socket write
//
// Each stage receives chunks (views into pooled buffers) and hands them on through its Output,
// now or later (timers), sliced or whole, in order. The fields every toxic shares (name, stream,
// toxicity) are handled here and by the pipe, not by each toxic; a toxic type only declares its
// attributes (attributes.h) and implements its stage. One file per type in src/toxics/, which
// registers the type itself (registry.h).

#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>
#include <uv.h>

#include "uv/buffer.h"

namespace faultline::toxics {

using uv::Chunk;

enum class Stream { Upstream, Downstream }; // upstream: client→Redis, downstream: Redis→client

std::string_view to_string(Stream s);
bool parse_stream(std::string_view text, Stream& out);

// What a stage can do to the data and the session it belongs to.
class Output {
public:
  virtual ~Output() = default;
  virtual void data(Chunk c) = 0;  // to the next stage, or the peer's socket
  virtual void eof() = 0;          // the source's FIN, in order after all data passed on
  virtual void dropped(size_t bytes) = 0; // bytes a stage discarded (for backpressure accounting)
  virtual void close_session() = 0;       // close both sockets (FIN / normal close)
  virtual void reset_session() = 0;       // close both sockets with RST
  virtual uv_loop_t* loop() = 0;
  virtual std::mt19937_64& rng() = 0;     // the session's seeded generator
  virtual uv::BufferPool& pool() = 0;
};

class Stage {
public:
  explicit Stage(Output& out) : out_(out) {}
  virtual ~Stage() = default;
  Stage(const Stage&) = delete;
  Stage& operator=(const Stage&) = delete;

  virtual void on_data(Chunk c) { out_.data(std::move(c)); }
  virtual void on_eof() { out_.eof(); }
  // The toxic is being removed or replaced: hand on everything held, now, in order (including a
  // held eof). The stage is destroyed right after.
  virtual void flush() {}

protected:
  Output& out_;
};

// Immutable parameters of one toxic type. Subclasses live one per file under src/toxics/.
class RespRule;

class ToxicImpl {
public:
  virtual ~ToxicImpl() = default;
  virtual nlohmann::json attributes() const = 0;
  // Connection-level toxics make a stage; RESP-aware ones return nullptr here and a rule below.
  virtual std::unique_ptr<Stage> make_stage(Output& out) const = 0;
  virtual const RespRule* resp_rule() const { return nullptr; }
  // A toxic that acts through a deployment's rewriter (proxy/rewriter.h) rather than on the
  // bytes: only a proxy whose rewriter accepts it can take it (Proxy::refuses_toxic).
  virtual bool needs_deployment() const { return false; }
};

struct Toxic {
  std::string name;
  std::string type;
  Stream stream = Stream::Downstream;
  double toxicity = 1.0;
  std::shared_ptr<const ToxicImpl> impl;

  nlohmann::json to_json() const;
};

// The name a toxic gets when none is given, the same from the API, `ctl`, the Python helper
// (which leave it to the API) and profiles. Toxiproxy's types keep Toxiproxy's `<type>_<stream>`
// (clients look toxics up by it); faultline's RESP types say what they do and to which commands:
// `resp_error_loading_GET+SET`, `resp_delay_reply`, `resp_reply_nil_GET`. Only letters, digits
// and `_+.-`, so the name needs no escaping in a URL.
std::string default_name(std::string_view type, Stream stream, const ToxicImpl* impl);

// Bad attributes, an unknown type: the message names the attribute (or the type). `attribute`
// is the JSON key at fault when there is one, so that a profile can point at its line.
struct ToxicError : std::runtime_error {
  using std::runtime_error::runtime_error;
  ToxicError(const std::string& message, std::string attr)
      : std::runtime_error(message), attribute(std::move(attr)) {}
  std::string attribute;
};

// The registry of toxic types (registry.h: each type registers itself from its own file).
bool known_type(std::string_view type);
// Parses and checks the JSON attributes of `type`; throws ToxicError.
std::shared_ptr<const ToxicImpl> make_impl(std::string_view type, const nlohmann::json& attrs);
std::vector<std::string> type_names(); // in listing order: Toxiproxy's types, then faultline's
// Every attribute name `type` reads (the RESP filter's included); empty for an unknown type.
std::vector<std::string_view> attribute_names(std::string_view type);

} // namespace faultline::toxics
