#pragma once
// Room: the unused tail of a block its owner already holds, from which the small fixed arrays
// of the objects built in the block are taken, instead of one heap allocation each.
//
// Why: an idle connection frees its RESP state (parsers, pairing ring), and memory freed
// between other allocations of the heap stays in the process. The session places that state in
// a page-aligned slot of its own (uv::SlotPool) whose pages go back to the system whole; the
// state's arrays must then live in the same slot, not on the heap beside it.
//
// ArrayStorage<T> is a fixed-size array either carved from a Room (not owned: it goes with the
// block) or, when the room is too small or absent, allocated on the heap (owned). Either way it
// is used the same: get(), operator[]; moving it keeps the same memory.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <utility>

namespace faultline {

struct Room {
  char* p = nullptr;
  size_t left = 0;
  // n bytes aligned to `align` from the room, or nullptr (and the room unchanged) when they do
  // not fit.
  void* take(size_t n, size_t align) {
    auto at = reinterpret_cast<uintptr_t>(p);
    const size_t pad = (align - at % align) % align;
    if (p == nullptr || pad + n > left) return nullptr;
    p += pad + n;
    left -= pad + n;
    return reinterpret_cast<void*>(at + pad);
  }
};

template <class T> class ArrayStorage {
public:
  ArrayStorage() = default;
  // n value-initialized Ts, from `room` when it has them, else from the heap.
  ArrayStorage(size_t n, Room* room) : n_(n) {
    void* at = room ? room->take(n * sizeof(T), alignof(T)) : nullptr;
    owned_ = at == nullptr;
    if (owned_) at = ::operator new(n * sizeof(T), std::align_val_t{alignof(T)});
    p_ = static_cast<T*>(at);
    std::uninitialized_value_construct_n(p_, n);
  }
  ArrayStorage(const ArrayStorage&) = delete;
  ArrayStorage& operator=(const ArrayStorage&) = delete;
  ArrayStorage(ArrayStorage&& o) noexcept
      : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)),
        owned_(std::exchange(o.owned_, false)) {}
  ArrayStorage& operator=(ArrayStorage&& o) noexcept {
    if (this != &o) {
      free();
      p_ = std::exchange(o.p_, nullptr);
      n_ = std::exchange(o.n_, 0);
      owned_ = std::exchange(o.owned_, false);
    }
    return *this;
  }
  ~ArrayStorage() { free(); }

  T* get() const { return p_; }
  T& operator[](size_t i) const { return p_[i]; }
  size_t size() const { return n_; }
  bool owned() const { return owned_; }
  // What n Ts take from a room at most (alignment included): for sizing the block.
  static constexpr size_t room_bytes(size_t n) { return n * sizeof(T) + alignof(T) - 1; }

private:
  void free() {
    if (!p_) return;
    std::destroy_n(p_, n_);
    if (owned_) ::operator delete(p_, std::align_val_t{alignof(T)});
    p_ = nullptr;
  }
  T* p_ = nullptr;
  size_t n_ = 0;
  bool owned_ = false;
};

} // namespace faultline
