#pragma once
// What a stage holds back, and the one place that hands it on.
//
//   on_data / on_eof ─► HeldQueue [chunk][chunk][piece]...[eof] ─► release_front / release_due
//                                                               └► flush: all of it, now
//
// A holding stage (latency, bandwidth, slicer, reset_peer, slow_close) keeps chunks and the
// source's FIN in arrival order, each with the time it is due when the stage works by
// deadlines (0 otherwise), and decides when the front may go. Whatever the stage's rule, what
// leaves the queue leaves in order, the FIN last; flush(), on removal or replacement of the
// toxic, hands on everything still held, including a held FIN (the Stage contract).

#include <cstdint>
#include <deque>
#include <utility>

#include "toxics/toxic.h"
#include "uv/timer.h"

namespace faultline::toxics {

class HeldQueue {
public:
  struct Item {
    Chunk chunk;
    bool eof = false;
    uint64_t due = 0; // on the stage's own clock and unit; 0 when it releases by other rules
  };

  explicit HeldQueue(Output& out) : out_(out) {}
  HeldQueue(const HeldQueue&) = delete;
  HeldQueue& operator=(const HeldQueue&) = delete;

  void hold(Chunk c, uint64_t due = 0) { items_.push_back({std::move(c), false, due}); }
  void hold_eof(uint64_t due = 0) { items_.push_back({{}, true, due}); }

  bool empty() const { return items_.empty(); }
  size_t size() const { return items_.size(); }
  Item& front() { return items_.front(); }
  const Item& back() const { return items_.back(); }

  // Hands the front item on (its chunk, or the eof). It leaves the queue before the Output sees
  // it, so whatever the Output does next finds the queue consistent.
  void release_front() {
    Item it = std::move(items_.front());
    items_.pop_front();
    if (it.eof) out_.eof();
    else out_.data(std::move(it.chunk));
  }
  // Hands on, in order, the items due by `now`, stopping at the first that is not: order wins
  // over due times (with jitter a later chunk may be due earlier; it waits for the one before).
  void release_due(uint64_t now) {
    while (!items_.empty() && items_.front().due <= now) release_front();
  }
  // Everything, now, in order.
  void flush() {
    while (!items_.empty()) release_front();
  }

private:
  Output& out_;
  std::deque<Item> items_;
};

// Base of the stages that hold: the queue and the one timer the stage runs (to release the
// queue, or to act on the connection as reset_peer does). Removal or replacement stops the
// timer and hands everything on.
class HoldingStage : public Stage {
public:
  explicit HoldingStage(Output& out) : Stage(out), held_(out), timer_(out.loop()) {}
  void flush() override {
    timer_.stop();
    held_.flush();
  }

protected:
  HeldQueue held_;
  uv::Timer timer_;
};

} // namespace faultline::toxics
