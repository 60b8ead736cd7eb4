// slicer: cut every chunk into pieces of about `average_size` bytes (± `size_variation`) and
// hand them on `delay` µs apart, so the reader sees many small reads (TCP segmentation).
//
// Piece sizes follow Toxiproxy's algorithm: a span longer than average_size + size_variation is
// halved at a point moved by a uniform offset in [-size_variation, size_variation), and both
// halves are cut again. Each piece is its own Chunk (a view, no copy), so it reaches the socket
// as its own write.
//
// Delay: Toxiproxy sleeps `delay` µs after every piece. libuv timers count whole milliseconds,
// so pieces get deadlines on a microsecond schedule (piece k+1 is due `delay` µs after piece k,
// or on arrival when the toxic was idle) and each timer tick hands on, back to back, every piece
// whose deadline has passed. For delays of 1 ms and more this is one piece per tick; below 1 ms
// it is a few pieces per millisecond, which keeps Toxiproxy's average pace (the exact sub-ms
// spacing is not observable through a 1 ms timer anyway). delay 0 sends all pieces at once,
// still as separate writes. The eof follows the last piece's delay, as in Toxiproxy.

#include <algorithm>
#include <vector>

#include "toxics/held_queue.h"
#include "toxics/registry.h"

namespace faultline::toxics {

namespace {

struct SlicerParams {
  int64_t average_size;   // bytes
  int64_t size_variation; // bytes, <= average_size
  int64_t delay_us;
};

class SlicerStage final : public HoldingStage {
public:
  SlicerStage(Output& out, SlicerParams p) : HoldingStage(out), p_(p) {}

  void on_data(Chunk c) override {
    if (c.len == 0) return;
    if (held_.empty()) next_us_ = std::max(next_us_, now_us());
    std::vector<uint32_t> cuts;
    cut(0, c.len, cuts);
    uint32_t at = 0;
    for (uint32_t end : cuts) {
      held_.hold(c.take_front(end - at));
      at = end;
    }
    pump();
  }
  void on_eof() override {
    if (held_.empty()) next_us_ = std::max(next_us_, now_us());
    held_.hold_eof();
    pump();
  }

private:
  uint64_t now_us() const { return uv_now(out_.loop()) * 1000ull; }

  // Appends the end offsets of the pieces of [start, end).
  void cut(uint32_t start, uint32_t end, std::vector<uint32_t>& cuts) {
    int64_t len = end - start;
    if (len - p_.average_size <= p_.size_variation) {
      cuts.push_back(end);
      return;
    }
    int64_t mid = start + len / 2;
    if (p_.size_variation > 0) {
      // size_variation <= average_size keeps start <= mid < end (see Slicer); mid == start
      // (possible only when they are equal) would cut an empty piece and the same span again,
      // so Toxiproxy's next draw is taken at once.
      std::uniform_int_distribution<int64_t> d(0, 2 * p_.size_variation - 1);
      int64_t half = mid;
      do {
        mid = half + d(out_.rng()) - p_.size_variation;
      } while (mid <= start);
    }
    cut(start, static_cast<uint32_t>(mid), cuts);
    cut(static_cast<uint32_t>(mid), end, cuts);
  }

  void pump() {
    if (timer_.active()) return;
    uint64_t now = now_us();
    while (!held_.empty()) {
      if (next_us_ > now) {
        timer_.start((next_us_ - now + 999) / 1000, [this] { pump(); });
        return;
      }
      if (!held_.front().eof) next_us_ += static_cast<uint64_t>(p_.delay_us);
      held_.release_front();
    }
  }

  SlicerParams p_;
  uint64_t next_us_ = 0; // when the next piece may go
};

// size_variation <= average_size keeps every cut inside its span (see cut()). Toxiproxy takes a
// larger one too, then cuts outside the chunk and panics; equal is what its docs' examples use.
class Slicer final : public ParamToxic<SlicerParams> {
public:
  Slicer(SlicerParams p, const AttrTable<SlicerParams>& attrs)
      : ParamToxic(checked(p), attrs) {}
  std::unique_ptr<Stage> make_stage(Output& out) const override {
    return std::make_unique<SlicerStage>(out, p_);
  }

private:
  static SlicerParams checked(SlicerParams p) {
    if (p.size_variation > p.average_size)
      throw ToxicError("attribute 'size_variation' must not be greater than 'average_size'",
                       "size_variation");
    return p;
  }
};

} // namespace

// average_size has no default: Toxiproxy's 0 makes its slicer loop forever.
const ToxicType<Slicer> kSlicer{"slicer", 60, {
    int_attr("average_size", &SlicerParams::average_size, "bytes", {1, 1 << 30}, required,
             "the pieces' mean size"),
    int_attr("size_variation", &SlicerParams::size_variation, "bytes", {0, 1 << 30}, 0,
             "a piece is up to this much smaller or larger; at most `average_size`"),
    int_attr("delay", &SlicerParams::delay_us, "µs", {0, 3'600'000'000}, 0,
             "the pause between two pieces; below 1000, a few pieces per ms at the same pace"),
}};

} // namespace faultline::toxics
