#include "observe/sink.h"

#include "base/log.h"
#include "uv/platform.h"

namespace faultline::observe {

LogSink::LogSink(uv_loop_t* loop, std::string path, size_t max_buffer)
    : loop_(loop), path_(std::move(path)), max_buffer_(max_buffer) {
  fill_.room(std::min<size_t>(max_buffer_, 1 << 20));
}

LogSink* LogSink::open(uv_loop_t* loop, const std::string& path, size_t max_buffer,
                       std::string& err, Opener opener) {
  auto* s = new LogSink(loop, path, max_buffer);
  s->opener_ = std::move(opener);
  if (!s->open_now(err)) {
    delete s;
    return nullptr;
  }
  return s;
}

bool LogSink::open_now(std::string& err) {
  if (path_ == "-") {
    fd_ = 1;
    own_fd_ = false;
  } else if (opener_) {
    fd_ = opener_(err);
    if (fd_ < 0) return false;
  } else {
    // O_NONBLOCK: a FIFO nobody reads fails at once (ENXIO) instead of blocking the loop.
    uv_fs_t req;
    int fd = uv_fs_open(nullptr, &req, path_.c_str(),
                        UV_FS_O_WRONLY | UV_FS_O_CREAT | UV_FS_O_APPEND | UV_FS_O_NONBLOCK, 0644,
                        nullptr);
    uv_fs_req_cleanup(&req);
    if (fd < 0) {
      err = fmt::format("cannot open log file {}: {}", path_, uv_strerror(fd));
      return false;
    }
    fd_ = fd;
  }
  switch (uv_guess_handle(fd_)) {
  case UV_TTY:
    if (uv_tty_init(loop_, &stream_.tty, fd_, 0) == 0) {
      kind_ = Kind::Tty;
      stream_open_ = true;
    }
    break;
  case UV_NAMED_PIPE:
    if (uv_pipe_init(loop_, &stream_.pipe, 0) == 0) {
      stream_open_ = true;
      if (uv_pipe_open(&stream_.pipe, fd_) == 0) {
        kind_ = Kind::Pipe;
      } else {
        uv_close(reinterpret_cast<uv_handle_t*>(&stream_.pipe), nullptr);
        stream_open_ = false;
      }
    }
    break;
  default: break; // regular file, /dev/null...: the thread pool
  }
  if (kind_ != Kind::File) stream_.pipe.data = this;
  if (kind_ == Kind::File && own_fd_) {
    // Back to blocking mode for the thread pool's writes (O_NONBLOCK was for the open).
    uv::platform::set_blocking(fd_);
  }
  fs_req_.data = this;
  write_req_.data = this;
  open_req_.data = this;
  return true;
}

bool LogSink::append(std::string_view data, uint64_t records) {
  if (closing_) return false;
  if (fill_.size() + data.size() > max_buffer_) {
    records_dropped_ += records;
    return false;
  }
  fill_.append(data);
  fill_records_ += records;
  if (fill_.size() >= kEagerWriteBytes && !writing_ && !opening_) start_write();
  return true;
}

void LogSink::flush() {
  if (!writing_ && !opening_ && !fill_.empty()) start_write();
}

void LogSink::start_write() {
  inflight_.swap(fill_);
  fill_.clear();
  inflight_records_ = fill_records_;
  fill_records_ = 0;
  inflight_off_ = 0;
  writing_ = true;
  uv_buf_t buf = uv_buf_init(inflight_.data(), static_cast<unsigned>(inflight_.size()));
  if (kind_ == Kind::File) {
    int rc = uv_fs_write(loop_, &fs_req_, fd_, &buf, 1, -1, [](uv_fs_t* req) {
      ssize_t result = req->result;
      uv_fs_req_cleanup(req);
      static_cast<LogSink*>(req->data)->write_done(result);
    });
    if (rc < 0) write_done(rc);
    return;
  }
  auto* stream = reinterpret_cast<uv_stream_t*>(&stream_.pipe);
  int rc = uv_write(&write_req_, stream, &buf, 1, [](uv_write_t* req, int status) {
    auto* self = static_cast<LogSink*>(req->data);
    self->write_done(status < 0 ? status : static_cast<ssize_t>(self->inflight_.size()));
  });
  if (rc < 0) write_done(rc);
}

void LogSink::write_done(ssize_t result) {
  if (result < 0) {
    if (!error_logged_ && result != UV_ECANCELED) {
      error_logged_ = true;
      log::warn("traffic log {}: write failed: {}; records are dropped until writes succeed",
                path_ == "-" ? "stdout" : path_, uv_strerror(static_cast<int>(result)));
    }
    records_dropped_ += inflight_records_;
  } else {
    inflight_off_ += static_cast<size_t>(result);
    if (kind_ == Kind::File && inflight_off_ < inflight_.size() && result > 0) {
      uv_buf_t buf = uv_buf_init(inflight_.data() + inflight_off_,
                                 static_cast<unsigned>(inflight_.size() - inflight_off_));
      int rc = uv_fs_write(loop_, &fs_req_, fd_, &buf, 1, -1, [](uv_fs_t* req) {
        ssize_t r = req->result;
        uv_fs_req_cleanup(req);
        static_cast<LogSink*>(req->data)->write_done(r);
      });
      if (rc == 0) return;
      records_dropped_ += inflight_records_;
    } else {
      records_written_ += inflight_records_;
      bytes_written_ += inflight_.size();
      error_logged_ = false;
    }
  }
  writing_ = false;
  inflight_.clear();
  inflight_records_ = 0;
  if (result == UV_ECANCELED) return; // the stream is being closed
  if (reopen_wanted_) {
    start_reopen();
    return;
  }
  if (!fill_.empty()) {
    start_write();
    return;
  }
  if (closing_) maybe_finish();
}

void LogSink::reopen() {
  if (kind_ != Kind::File || !own_fd_ || closing_) return;
  reopen_wanted_ = true;
  if (!writing_ && !opening_) start_reopen();
}

void LogSink::start_reopen() {
  reopen_wanted_ = false;
  opening_ = true;
  if (opener_) {
    // The opener walks directories with blocking calls: on the thread pool, as uv_fs_open does.
    struct Work {
      uv_work_t req;
      LogSink* self;
      Opener opener;
      int fd = -1;
      std::string err;
    };
    auto* w = new Work{{}, this, opener_, -1, {}};
    w->req.data = w;
    int rc = uv_queue_work(
        loop_, &w->req,
        [](uv_work_t* r) {
          auto* w = static_cast<Work*>(r->data);
          w->fd = w->opener(w->err);
        },
        [](uv_work_t* r, int) {
          std::unique_ptr<Work> w(static_cast<Work*>(r->data));
          w->self->reopened(w->fd, w->err);
        });
    if (rc < 0) {
      delete w;
      opening_ = false;
      log::warn("traffic log: cannot reopen {}: {}", path_, uv_strerror(rc));
    }
    return;
  }
  int rc = uv_fs_open(loop_, &open_req_, path_.c_str(),
                      UV_FS_O_WRONLY | UV_FS_O_CREAT | UV_FS_O_APPEND, 0644,
                      [](uv_fs_t* req) {
                        auto* self = static_cast<LogSink*>(req->data);
                        ssize_t fd = req->result;
                        uv_fs_req_cleanup(req);
                        self->reopened(fd, fd < 0 ? uv_strerror(static_cast<int>(fd)) : "");
                      });
  if (rc < 0) {
    opening_ = false;
    log::warn("traffic log: cannot reopen {}: {}", path_, uv_strerror(rc));
  }
}

void LogSink::reopened(ssize_t fd, const std::string& error) {
  opening_ = false;
  if (fd >= 0) {
    auto* close_req = new uv_fs_t;
    uv_fs_close(loop_, close_req, fd_, [](uv_fs_t* r) {
      uv_fs_req_cleanup(r);
      delete r;
    });
    fd_ = static_cast<uv_file>(fd);
    ++reopens_;
    log::info("traffic log: reopened {}", path_);
  } else {
    log::warn("traffic log: cannot reopen {}: {}; still writing to the old file", path_, error);
  }
  if (!fill_.empty()) start_write();
  else if (closing_) maybe_finish();
}

void LogSink::close() {
  if (closing_) return;
  closing_ = true;
  reopen_wanted_ = false;
  if (writing_ || opening_) return; // write_done / the open callback finish
  if (!fill_.empty()) {
    if (kind_ == Kind::File) {
      start_write();
      return;
    }
    // A stream: what fits now, without waiting for a reader that may never come.
    uv_buf_t buf = uv_buf_init(fill_.data(), static_cast<unsigned>(fill_.size()));
    uv_try_write(reinterpret_cast<uv_stream_t*>(&stream_.pipe), &buf, 1);
    fill_.clear();
  }
  maybe_finish();
}

void LogSink::maybe_finish() {
  if (writing_ || opening_) return;
  if (kind_ != Kind::File) {
    // Closing the stream also cancels a write stuck on a reader that never reads.
    uv_close(reinterpret_cast<uv_handle_t*>(&stream_.pipe),
             [](uv_handle_t* h) { delete static_cast<LogSink*>(h->data); });
    return;
  }
  if (own_fd_ && fd_ >= 0) {
    uv_fs_close(loop_, &fs_req_, fd_, [](uv_fs_t* req) {
      uv_fs_req_cleanup(req);
      delete static_cast<LogSink*>(req->data);
    });
    return;
  }
  delete this;
}

} // namespace faultline::observe
