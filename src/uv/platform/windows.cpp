// Windows side of uv/platform.h (cross-built with mingw-w64, tools/build-windows).
#include "uv/platform.h"

#include <csignal>
#include <cstdio>
#include <cstdlib>

#include <fcntl.h>
#include <io.h>

#include <fmt/format.h>
#include <uv.h> // brings <windows.h>

namespace faultline::uv::platform {

namespace {

// Lets a console show the ANSI colours `faultline inspect` and profile progress use.
void enable_vt(DWORD which) {
  HANDLE h = GetStdHandle(which);
  DWORD mode = 0;
  if (h != INVALID_HANDLE_VALUE && GetConsoleMode(h, &mode))
    SetConsoleMode(h, mode | ENABLE_VIRTUAL_TERMINAL_PROCESSING);
}

struct Stat {
  int rc = 0;
  uint64_t mode = 0;
};

Stat lstat_path(const std::string& path) {
  uv_fs_t req;
  Stat s;
  s.rc = uv_fs_lstat(nullptr, &req, path.c_str(), nullptr);
  if (s.rc == 0) s.mode = req.statbuf.st_mode;
  uv_fs_req_cleanup(&req);
  return s;
}

void close_fd(int fd) {
  uv_fs_t req;
  uv_fs_close(nullptr, &req, fd, nullptr);
  uv_fs_req_cleanup(&req);
}

} // namespace

void init_process() {
  _setmode(_fileno(stdout), _O_BINARY);
  _setmode(_fileno(stderr), _O_BINARY);
  enable_vt(STD_OUTPUT_HANDLE);
  enable_vt(STD_ERROR_HANDLE);
}

bool is_terminal(int fd) {
  return uv_guess_handle(fd) == UV_TTY;
}

int interrupt_signal() {
  return SIGINT;
}

int terminate_signal() {
  return SIGBREAK;
}

const char* signal_name(int signum) {
  return signum == SIGINT ? "Ctrl-C" : signum == SIGBREAK ? "Ctrl-Break" : "signal";
}

bool check_confined_name(std::string_view name, std::string& err) {
  if (name.find('\\') != std::string_view::npos || name.find(':') != std::string_view::npos) {
    err = fmt::format("'{}': use '/' between components; '\\' and ':' are not allowed", name);
    return false;
  }
  return true;
}

int open_confined_append(const std::string& dir, const std::vector<std::string_view>& parts,
                         const std::string& full, std::string& err) {
  std::string path = dir;
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    path += '/';
    path += parts[i];
    Stat s = lstat_path(path);
    if (s.rc < 0) {
      err = fmt::format("cannot open log file {}: {}", full, uv_strerror(s.rc));
      return -1;
    }
    if ((s.mode & S_IFMT) != S_IFDIR) {
      err = fmt::format("will not open {}: '{}' is a symbolic link or not a directory", full,
                        parts[i]);
      return -1;
    }
  }
  path += '/';
  path += parts.back();
  if (Stat s = lstat_path(path); s.rc == 0 && (s.mode & S_IFMT) != S_IFREG) {
    err = (s.mode & S_IFMT) == S_IFLNK
              ? fmt::format("will not open {}: it is a symbolic link", full)
              : fmt::format("will not open {}: not a regular file", full);
    return -1;
  }
  uv_fs_t req;
  int fd = uv_fs_open(nullptr, &req, path.c_str(), UV_FS_O_RDWR | UV_FS_O_CREAT | UV_FS_O_APPEND,
                      0644, nullptr);
  uv_fs_req_cleanup(&req);
  if (fd < 0) {
    err = fmt::format("cannot open log file {}: {}", full, uv_strerror(fd));
    return -1;
  }
  int rc = uv_fs_fstat(nullptr, &req, fd, nullptr);
  uint64_t mode = rc == 0 ? req.statbuf.st_mode : 0;
  uv_fs_req_cleanup(&req);
  if ((mode & S_IFMT) != S_IFREG) {
    close_fd(fd);
    err = fmt::format("will not open {}: not a regular file", full);
    return -1;
  }
  return fd;
}

void set_blocking(int) {}

uint64_t raise_fd_limit(uint64_t& before) {
  return before = 0;
}

bool descriptors_free(int) {
  return true;
}

int max_listen_backlog() {
  return 0;
}

void release_free_memory() {}

size_t page_size() {
  SYSTEM_INFO si;
  GetSystemInfo(&si);
  return si.dwPageSize;
}

void* map_pages(size_t bytes) {
  return VirtualAlloc(nullptr, bytes, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
}

void unmap_pages(void* p, size_t) {
  VirtualFree(p, 0, MEM_RELEASE);
}

void discard_pages(void* p, size_t bytes) {
  VirtualFree(p, bytes, MEM_DECOMMIT);
}

void reuse_pages(void* p, size_t bytes) {
  // Out of memory: as operator new would throw (and nothing catches it).
  if (VirtualAlloc(p, bytes, MEM_COMMIT, PAGE_READWRITE) == nullptr) std::abort();
}

} // namespace faultline::uv::platform
