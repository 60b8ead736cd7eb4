#include "uv/confined_open.h"

#include <vector>

#include <fmt/format.h>
#include <uv.h>

#include "uv/platform.h"

namespace faultline::uv {

namespace {

std::vector<std::string_view> split(std::string_view rel) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  while (start <= rel.size()) {
    size_t slash = rel.find('/', start);
    if (slash == std::string_view::npos) slash = rel.size();
    parts.push_back(rel.substr(start, slash - start));
    start = slash + 1;
  }
  return parts;
}

} // namespace

bool ConfinedDir::set(const std::string& dir, std::string& err) {
  uv_fs_t req;
  int rc = uv_fs_realpath(nullptr, &req, dir.c_str(), nullptr);
  std::string real = rc == 0 ? static_cast<const char*>(req.ptr) : "";
  uv_fs_req_cleanup(&req);
  if (rc != 0) {
    err = fmt::format("{}: {}", dir, uv_strerror(rc));
    return false;
  }
  rc = uv_fs_stat(nullptr, &req, real.c_str(), nullptr);
  const bool is_dir = rc == 0 && (req.statbuf.st_mode & S_IFMT) == S_IFDIR;
  uv_fs_req_cleanup(&req);
  if (!is_dir) {
    err = fmt::format("{}: not a directory", dir);
    return false;
  }
  dir_ = real;
  while (dir_.size() > 1 && dir_.back() == '/') dir_.pop_back();
  given_ = dir;
  while (given_.size() > 1 && given_.back() == '/') given_.pop_back();
  return true;
}

bool ConfinedDir::resolve(std::string_view name, std::string& out, std::string& err) const {
  if (name.empty()) {
    err = "the path is empty";
    return false;
  }
  if (name.find('\0') != std::string_view::npos) {
    err = "the path contains a NUL byte";
    return false;
  }
  if (!platform::check_confined_name(name, err)) return false;
  std::string_view rel = name;
  if (rel.front() == '/') {
    // Absolute: it must name something inside the directory, by its resolved path or by the
    // path it was given as (the directory itself was resolved once, at start).
    bool inside = false;
    for (const std::string* d : {&dir_, &given_}) {
      const std::string prefix = *d == "/" ? "/" : *d + "/";
      if (!inside && !d->empty() && d->front() == '/' && rel.substr(0, prefix.size()) == prefix) {
        rel.remove_prefix(prefix.size());
        inside = true;
      }
    }
    if (!inside) {
      err = fmt::format("'{}' is not inside the log directory {}", name, dir_);
      return false;
    }
  }
  if (rel.empty() || rel.back() == '/') {
    err = fmt::format("'{}' does not name a file", name);
    return false;
  }
  for (std::string_view part : split(rel)) {
    if (part.empty() || part == "." || part == "..") {
      err = fmt::format("'{}': components '..', '.' and empty ones are not allowed", name);
      return false;
    }
  }
  out = (dir_ == "/" ? "" : dir_) + "/" + std::string(rel);
  return true;
}

int ConfinedDir::open_append(const std::string& full, std::string& err) const {
  std::string_view rel = full;
  const std::string prefix = dir_ == "/" ? "/" : dir_ + "/";
  if (dir_.empty() || rel.substr(0, prefix.size()) != prefix) {
    err = fmt::format("'{}' is not inside the log directory", full);
    return -1;
  }
  rel.remove_prefix(prefix.size());
  return platform::open_confined_append(dir_, split(rel), full, err);
}

bool read_head(int fd, size_t max, std::string& out, std::string& err) {
  out.resize(max);
  size_t got = 0;
  while (got < max) {
    // At an offset: the file position is unchanged (pread on POSIX).
    uv_buf_t buf = uv_buf_init(out.data() + got, static_cast<unsigned>(max - got));
    uv_fs_t req;
    int n = uv_fs_read(nullptr, &req, fd, &buf, 1, static_cast<int64_t>(got), nullptr);
    uv_fs_req_cleanup(&req);
    if (n < 0) {
      err = uv_strerror(n);
      return false;
    }
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  out.resize(got);
  return true;
}

void close_file(int fd) {
  uv_fs_t req;
  uv_fs_close(nullptr, &req, fd, nullptr);
  uv_fs_req_cleanup(&req);
}

} // namespace faultline::uv
