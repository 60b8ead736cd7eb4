#include "uv/slot_pool.h"

#include <algorithm>
#include <cstdlib>

#include "uv/platform.h"

namespace faultline::uv {

SlotPool::SlotPool(size_t slot_bytes) {
  const size_t page = platform::page_size();
  slot_bytes_ = std::max<size_t>(page, (slot_bytes + page - 1) / page * page);
}

SlotPool::~SlotPool() {
  for (void* r : regions_) platform::unmap_pages(r, slot_bytes_ * kSlotsPerRegion);
}

void SlotPool::map_region() {
  char* r = static_cast<char*>(platform::map_pages(slot_bytes_ * kSlotsPerRegion));
  if (r == nullptr) std::abort();  // as operator new would throw: out of memory
  // Sorted, for trim() to find where one region ends.
  regions_.insert(std::upper_bound(regions_.begin(), regions_.end(), r), r);
  // Highest first, so that acquire() hands out the region from its start.
  for (size_t i = kSlotsPerRegion; i-- > 0;) clean_.push_back(r + i * slot_bytes_);
}

void* SlotPool::acquire() {
  void* s;
  if (!dirty_.empty()) {
    s = dirty_.back();
    dirty_.pop_back();
  } else {
    if (clean_.empty()) map_region();
    s = clean_.back();
    clean_.pop_back();
    platform::reuse_pages(s, slot_bytes_);
  }
  ++in_use_;
  return s;
}

void SlotPool::release(void* slot) {
  --in_use_;
  dirty_.push_back(slot);
}

size_t SlotPool::trim() {
  const size_t n = dirty_.size();
  if (n == 0) return 0;
  std::sort(dirty_.begin(), dirty_.end());
  char* run = static_cast<char*>(dirty_[0]);
  size_t len = slot_bytes_;
  for (size_t i = 1; i <= n; ++i) {
    char* s = i < n ? static_cast<char*>(dirty_[i]) : nullptr;
    // One call per run of adjacent slots, never across two regions (Windows decommits only
    // within one allocation; two mappings may happen to be adjacent).
    if (s == run + len && !std::binary_search(regions_.begin(), regions_.end(), s)) {
      len += slot_bytes_;
      continue;
    }
    platform::discard_pages(run, len);
    run = s;
    len = slot_bytes_;
  }
  // Clean slots are handed out lowest address first (they are popped from the back).
  clean_.insert(clean_.end(), dirty_.rbegin(), dirty_.rend());
  dirty_.clear();
  return n;
}

} // namespace faultline::uv
