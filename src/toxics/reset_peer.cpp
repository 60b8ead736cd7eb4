// reset_peer: the first data (or eof) to reach this toxic arms it; `timeout` ms later both
// sockets are closed with RST (ECONNRESET for the client). timeout 0 resets on that first data.
// As in Toxiproxy, nothing that reaches the toxic is forwarded, and a connection on which this
// direction stays silent is never reset.
//
// Deviation: Toxiproxy discards what it swallows; here it is held, so that removing or updating
// the toxic before the reset hands it on in order (the Stage contract) and cancels the reset.

#include "toxics/held_queue.h"
#include "toxics/registry.h"

namespace faultline::toxics {

namespace {

struct ResetPeerParams {
  int64_t timeout_ms;
};

class ResetPeerStage final : public HoldingStage {
public:
  ResetPeerStage(Output& out, ResetPeerParams p) : HoldingStage(out), p_(p) {}

  void on_data(Chunk c) override {
    held_.hold(std::move(c));
    arm();
  }
  void on_eof() override {
    held_.hold_eof();
    arm();
  }

private:
  // The timer is the reset's; flush() stopping it is what cancels the reset.
  void arm() {
    if (armed_) return;
    armed_ = true;
    if (p_.timeout_ms == 0) {
      out_.reset_session();
      return;
    }
    timer_.start(static_cast<uint64_t>(p_.timeout_ms), [this] { out_.reset_session(); });
  }

  ResetPeerParams p_;
  bool armed_ = false;
};

} // namespace

const ToxicType<StageToxic<ResetPeerParams, ResetPeerStage>> kResetPeer{"reset_peer", 50, {
    int_attr("timeout", &ResetPeerParams::timeout_ms, "ms", {0, 86'400'000}, 0,
             "both sockets are reset this long after the first data; 0: on that data"),
}};

} // namespace faultline::toxics
