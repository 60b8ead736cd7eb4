#include "uv/confined_open.h"

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

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
  char buf[PATH_MAX];
  if (!::realpath(dir.c_str(), buf)) {
    err = fmt::format("{}: {}", dir, std::strerror(errno));
    return false;
  }
  struct stat st {};
  if (::stat(buf, &st) != 0 || !S_ISDIR(st.st_mode)) {
    err = fmt::format("{}: not a directory", dir);
    return false;
  }
  dir_ = buf;
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
  std::vector<std::string_view> parts = split(rel);
  int dfd = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) {
    err = fmt::format("cannot open the log directory {}: {}", dir_, std::strerror(errno));
    return -1;
  }
  // Walk down one directory at a time, never through a symbolic link.
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    std::string part(parts[i]);
    int next = ::openat(dfd, part.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    int e = errno;
    ::close(dfd);
    if (next < 0) {
      err = e == ELOOP || e == ENOTDIR
                ? fmt::format("will not open {}: '{}' is a symbolic link or not a directory",
                              full, part)
                : fmt::format("cannot open log file {}: {}", full, std::strerror(e));
      return -1;
    }
    dfd = next;
  }
  std::string last(parts.back());
  // O_NONBLOCK: a FIFO would not block the open; it is refused below anyway.
  int fd = ::openat(dfd, last.c_str(),
                    O_RDWR | O_CREAT | O_APPEND | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0644);
  int e = errno;
  ::close(dfd);
  if (fd < 0) {
    err = e == ELOOP ? fmt::format("will not open {}: it is a symbolic link", full)
                     : fmt::format("cannot open log file {}: {}", full, std::strerror(e));
    return -1;
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    err = fmt::format("will not open {}: not a regular file", full);
    return -1;
  }
  int fl = ::fcntl(fd, F_GETFL);
  if (fl >= 0) ::fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
  return fd;
}

bool read_head(int fd, size_t max, std::string& out, std::string& err) {
  out.resize(max);
  size_t got = 0;
  while (got < max) {
    ssize_t n = ::pread(fd, out.data() + got, max - got, static_cast<off_t>(got));
    if (n < 0) {
      if (errno == EINTR) continue;
      err = std::strerror(errno);
      return false;
    }
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  out.resize(got);
  return true;
}

} // namespace faultline::uv
