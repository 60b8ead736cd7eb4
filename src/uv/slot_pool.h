#pragma once
// Fixed-size, page-aligned slots in regions of their own, whose pages go back to the system.
//
// An idle session frees its RESP state (some 3 kB: parsers, pairing ring). From the heap, that
// memory would stay in the process: it lies between the allocations of sessions that live on,
// and the allocator can only hand back whole free pages. From a slot, it goes back at once and
// whole (trim()), whatever lives around it, so the memory of a pool's idle connections is what
// they still use.
//
// Slots come from regions of kSlotsPerRegion, mapped as needed and kept (address space only,
// once trimmed). A released slot is reused first while its pages are still resident; trim()
// hands back the pages of every slot released since the last trim (adjacent slots in one call),
// after which a reused slot reads as zeros (POSIX) or is committed again (Windows). Single
// loop, single thread.

#include <cstddef>
#include <vector>

namespace faultline::uv {

class SlotPool {
public:
  static constexpr size_t kSlotsPerRegion = 64;
  // slot_bytes is rounded up to whole pages.
  explicit SlotPool(size_t slot_bytes);
  SlotPool(const SlotPool&) = delete;
  SlotPool& operator=(const SlotPool&) = delete;
  ~SlotPool();  // unmaps every region: no slot may be in use

  size_t slot_bytes() const { return slot_bytes_; }
  void* acquire();
  void release(void* slot);
  // Hands back the pages of the slots released since the last trim; returns how many slots.
  size_t trim();

  size_t in_use() const { return in_use_; }
  size_t resident_free() const { return dirty_.size(); }  // released, pages not yet handed back
  size_t regions() const { return regions_.size(); }

private:
  void map_region();
  size_t slot_bytes_;
  size_t in_use_ = 0;
  std::vector<void*> regions_;
  std::vector<void*> dirty_;  // released since the last trim: pages resident, reused first
  std::vector<void*> clean_;  // pages handed back
};

} // namespace faultline::uv
