#pragma once
// A std::deque that costs one pointer until the first element arrives. libstdc++'s std::deque
// allocates a 512-byte block and its map (some 600 bytes) as soon as it is constructed, even
// when it stays empty; a connection carries several queues that most connections never use
// (requests held by a fault, the names of faults, hashes of requests at risk), which cost
// kilobytes per connection that way. Once created the deque stays, so that a queue in use does
// not allocate per element; release() gives it back at a quiet moment.

#include <cstddef>
#include <deque>
#include <memory>
#include <utility>

namespace faultline {

template <class T> class LazyDeque {
public:
  using value_type = T;
  using iterator = typename std::deque<T>::iterator;
  using const_iterator = typename std::deque<T>::const_iterator;

  bool empty() const { return !d_ || d_->empty(); }
  size_t size() const { return d_ ? d_->size() : 0; }
  T& front() { return d_->front(); }
  const T& front() const { return d_->front(); }
  T& back() { return d_->back(); }
  const T& back() const { return d_->back(); }
  T& operator[](size_t i) { return (*d_)[i]; }
  const T& operator[](size_t i) const { return (*d_)[i]; }
  void push_back(const T& v) { get().push_back(v); }
  void push_back(T&& v) { get().push_back(std::move(v)); }
  template <class... A> T& emplace_back(A&&... a) {
    return get().emplace_back(std::forward<A>(a)...);
  }
  void pop_front() { d_->pop_front(); }
  iterator erase(iterator it) { return d_->erase(it); }
  void pop_back() { d_->pop_back(); }
  void clear() {
    if (d_) d_->clear();
  }
  // Frees the deque's memory if it is empty.
  void release() {
    if (d_ && d_->empty()) d_.reset();
  }
  iterator begin() { return d_ ? d_->begin() : none().begin(); }
  iterator end() { return d_ ? d_->end() : none().end(); }
  const_iterator begin() const { return d_ ? d_->cbegin() : none().cbegin(); }
  const_iterator end() const { return d_ ? d_->cend() : none().cend(); }

private:
  std::deque<T>& get() {
    if (!d_) d_ = std::make_unique<std::deque<T>>();
    return *d_;
  }
  // begin() == end() of an empty queue; never dereferenced, never changed.
  static std::deque<T>& none() {
    static std::deque<T> empty;
    return empty;
  }
  std::unique_ptr<std::deque<T>> d_;
};

} // namespace faultline
