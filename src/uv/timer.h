#pragma once
// A one-shot or repeating libuv timer for objects that may be destroyed before the loop runs
// again (toxic stages). The handle lives on the heap and is freed by its own close callback, so
// destroying the owner at any time is safe: uv_close guarantees the callback never fires after.

#include <functional>
#include <uv.h>

namespace faultline::uv {

class Timer {
public:
  explicit Timer(uv_loop_t* loop) : h_(new uv_timer_t) {
    uv_timer_init(loop, h_);
    h_->data = this;
  }
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;
  ~Timer() {
    uv_close(reinterpret_cast<uv_handle_t*>(h_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
  }
  void start(uint64_t timeout_ms, std::function<void()> cb, uint64_t repeat_ms = 0) {
    cb_ = std::move(cb);
    uv_timer_start(
        h_, [](uv_timer_t* t) { static_cast<Timer*>(t->data)->cb_(); }, timeout_ms, repeat_ms);
  }
  void stop() { uv_timer_stop(h_); }
  // An unreferenced timer does not keep the loop running (uv_unref).
  void unref() { uv_unref(reinterpret_cast<uv_handle_t*>(h_)); }
  bool active() const { return uv_is_active(reinterpret_cast<const uv_handle_t*>(h_)) != 0; }

private:
  uv_timer_t* h_;
  std::function<void()> cb_;
};

} // namespace faultline::uv
