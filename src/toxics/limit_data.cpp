// limit_data: hand on at most `bytes` bytes in this direction, then end it: the bytes up to the
// limit are delivered exactly (a chunk crossing the limit is cut), followed by a FIN; whatever
// the source sends afterwards is discarded. As in Toxiproxy the check runs when data arrives, so
// with bytes 0 the first chunk ends the stream, and an idle connection is left alone.
//
// Deviation: Toxiproxy closes the whole connection at that point. Here the end is a FIN queued
// behind the delivered bytes, because close_session() closes the sockets at once and would
// cancel those bytes if they are still waiting in the write queue (a slow reader). Redis closes
// on the FIN (upstream limit) and clients close on it (downstream limit), which ends the
// connection as Toxiproxy's close does, with the exact byte count guaranteed.
// The count lives in the stage, so updating the toxic starts a new count (Toxiproxy keeps it).

#include <algorithm>

#include "toxics/registry.h"

namespace faultline::toxics {

namespace {

struct LimitDataParams {
  int64_t max_bytes;
};

class LimitDataStage final : public Stage {
public:
  LimitDataStage(Output& out, LimitDataParams p) : Stage(out), p_(p) {}

  void on_data(Chunk c) override {
    if (ended_) {
      out_.dropped(c.len);
      return;
    }
    uint64_t left = static_cast<uint64_t>(p_.max_bytes) - sent_;
    if (c.len > left) {
      out_.dropped(c.len - left);
      c.len = static_cast<uint32_t>(left);
    }
    if (c.len > 0) {
      sent_ += c.len;
      out_.data(std::move(c));
    }
    if (sent_ >= static_cast<uint64_t>(p_.max_bytes)) {
      ended_ = true;
      out_.eof();
    }
  }
  void on_eof() override {
    if (ended_) return; // the FIN already went on
    ended_ = true;
    out_.eof();
  }

private:
  LimitDataParams p_;
  uint64_t sent_ = 0;
  bool ended_ = false;
};

} // namespace

const ToxicType<StageToxic<LimitDataParams, LimitDataStage>> kLimitData{"limit_data", 70, {
    int_attr("bytes", &LimitDataParams::max_bytes, "bytes", {0, INT64_MAX}, 0,
             "how many bytes pass in this direction before the FIN"),
}};

} // namespace faultline::toxics
