#pragma once
// Files the control API may name are confined to one directory chosen at start (--log-dir): a
// request names a path inside it, and nothing it names may lead out of it, by `..` or by a
// symbolic link. This is the one place that opens such files; the opening itself differs
// between POSIX (openat, O_NOFOLLOW) and Windows, and lives in uv/platform.h.

#include <string>
#include <string_view>

namespace faultline::uv {

class ConfinedDir {
public:
  // The directory as the operator named it: resolved once (symbolic links in the directory's
  // own path are the operator's choice) and checked to be a directory. False with err set.
  bool set(const std::string& dir, std::string& err);
  bool empty() const { return dir_.empty(); }
  const std::string& path() const { return dir_; } // resolved, absolute, no trailing '/'

  // Turns what a request named into the path under the directory: relative to it, or absolute
  // and inside it (under its resolved path, or under the path as the operator wrote it). Refuses empty names, `..` and `.` components, a trailing '/', and NUL bytes.
  // The result is the directory's path, '/', then the relative part.
  bool resolve(std::string_view name, std::string& out, std::string& err) const;

  // Opens `full` (a resolve() result) for appending, creating it (0644) when missing. Every
  // directory below the confined one and the file itself are opened without following
  // symbolic links. A file that exists must be a regular file. The fd is blocking, close-on-exec,
  // open for reading too (read_head).
  // Returns the fd, or -1 with err set.
  int open_append(const std::string& full, std::string& err) const;

private:
  std::string dir_;
  std::string given_; // as given to set(), without trailing '/'
};

// Reads up to `max` bytes from the start of an open file (pread: the offset is unchanged).
// Returns false with err set on a read error.
bool read_head(int fd, size_t max, std::string& out, std::string& err);

// Closes a descriptor open_append returned.
void close_file(int fd);

} // namespace faultline::uv
