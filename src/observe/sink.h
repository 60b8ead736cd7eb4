#pragma once
// Where traffic records go: a file, or stdout (a file, a pipe or a terminal), written without
// ever blocking the loop.
//
//   append() ──► fill_ ──(flush: swap)──► inflight_ ──► uv_fs_write (threadpool) or uv_write
//                 │ full (max_buffer)                    one write at a time; on completion
//                 └─► record dropped and counted         the next batch is swapped in
//
// A record may also be formatted straight into fill_ (reserve, then commit), saving a copy.
// Regular files go through uv_fs_write (libuv's thread pool: portable, never blocks the loop);
// pipes, FIFOs and terminals through a uv_pipe_t / uv_tty_t stream. When the destination cannot
// keep up, records are dropped whole and counted; the traffic itself is never slowed.
//
// reopen() (SIGHUP, for logrotate) opens the path again once the write in flight is done, so
// records after it go to the new file. The sink frees itself: close() hands it over to its own
// callbacks, which delete it when nothing refers to it any more.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <uv.h>

#include "observe/record.h"

namespace faultline::observe {

class LogSink {
public:
  // Opens the file in place of open(2) on the path (the API's files, confined to --log-dir):
  // returns a blocking fd, or -1 with err set. Called again by reopen(), on the thread pool.
  using Opener = std::function<int(std::string& err)>;
  // path "-" is stdout. nullptr with err set when the file cannot be opened.
  static LogSink* open(uv_loop_t* loop, const std::string& path, size_t max_buffer,
                       std::string& err, Opener opener = {});
  LogSink(const LogSink&) = delete;
  LogSink& operator=(const LogSink&) = delete;

  // Adds one or more whole records; false (and counted) when they do not fit.
  bool append(std::string_view data, uint64_t records = 1);
  // Formatting a record in place, without a copy: room for up to n bytes at the end of the
  // buffer, or nullptr when n bytes might not fit (the caller then formats elsewhere and calls
  // append, which goes by the real size). commit() adds the record written there, ending at
  // `end`. Nothing else may touch the sink in between.
  char* reserve(size_t n) {
    if (closing_ || fill_.size() + n > max_buffer_) return nullptr;
    return fill_.room(n);
  }
  void commit(const char* end) {
    fill_.set_end(end);
    ++fill_records_;
    if (fill_.size() >= kEagerWriteBytes && !writing_ && !opening_) start_write();
  }
  // True when the buffer is (almost) full: the caller may skip formatting a record and count
  // it with dropped() instead, so a stuck destination costs less than a working one.
  bool saturated() const { return fill_.size() + kSaturationMargin > max_buffer_; }
  void dropped(uint64_t records) { records_dropped_ += records; }
  // Starts writing what is buffered, unless a write is in flight.
  void flush();
  void reopen();
  // Writes what is buffered (best effort), closes, and deletes this. Do not use it afterwards.
  void close();

  const std::string& path() const { return path_; }
  bool is_tty() const { return kind_ == Kind::Tty; }
  uint64_t records_written() const { return records_written_; }
  uint64_t records_dropped() const { return records_dropped_; }
  uint64_t bytes_written() const { return bytes_written_; }
  size_t buffered() const { return fill_.size() + inflight_.size(); }
  uint64_t reopens() const { return reopens_; }

private:
  static constexpr size_t kSaturationMargin = 4096;
  // A batch this large is written at once instead of waiting for the end of the loop iteration.
  static constexpr size_t kEagerWriteBytes = 256 << 10;
  enum class Kind { File, Pipe, Tty };
  LogSink(uv_loop_t* loop, std::string path, size_t max_buffer);
  ~LogSink() = default;
  bool open_now(std::string& err);
  void start_write();
  void write_done(ssize_t result);
  void maybe_finish();
  void start_reopen();
  void reopened(ssize_t fd, const std::string& error);

  uv_loop_t* loop_;
  std::string path_;
  size_t max_buffer_;
  Opener opener_;
  Kind kind_ = Kind::File;
  uv_file fd_ = -1;
  bool own_fd_ = true; // false for stdout
  union {
    uv_pipe_t pipe;
    uv_tty_t tty;
  } stream_{};
  bool stream_open_ = false;
  uv_fs_t fs_req_{};
  uv_write_t write_req_{};
  uv_fs_t open_req_{};
  RecordBuf fill_, inflight_;
  uint64_t fill_records_ = 0, inflight_records_ = 0;
  size_t inflight_off_ = 0;
  bool writing_ = false;
  bool opening_ = false;
  bool reopen_wanted_ = false;
  bool closing_ = false;
  uint64_t records_written_ = 0, records_dropped_ = 0, bytes_written_ = 0, reopens_ = 0;
  bool error_logged_ = false;
};

} // namespace faultline::observe
