// POSIX (Linux) side of uv/platform.h.
#include "uv/platform.h"

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>

#include <fcntl.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

namespace faultline::uv::platform {

void init_process() {
  std::signal(SIGPIPE, SIG_IGN);
}

bool is_terminal(int fd) {
  return ::isatty(fd) != 0;
}

int interrupt_signal() {
  return SIGINT;
}

int terminate_signal() {
  return SIGTERM;
}

const char* signal_name(int signum) {
  return signum == SIGINT ? "SIGINT" : signum == SIGTERM ? "SIGTERM" : "signal";
}

bool check_confined_name(std::string_view, std::string&) {
  return true;
}

int open_confined_append(const std::string& dir, const std::vector<std::string_view>& parts,
                         const std::string& full, std::string& err) {
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) {
    err = fmt::format("cannot open the log directory {}: {}", dir, std::strerror(errno));
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
  set_blocking(fd);
  return fd;
}

void set_blocking(int fd) {
  int fl = ::fcntl(fd, F_GETFL);
  if (fl >= 0) ::fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
}

uint64_t raise_fd_limit(uint64_t& before) {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return before = 0;
  before = rl.rlim_cur;
  if (rl.rlim_cur < rl.rlim_max) {
    rlimit want = rl;
    want.rlim_cur = rl.rlim_max;
    // An unlimited hard limit is not a valid soft one for descriptors (Linux caps it at
    // fs.nr_open, macOS at OPEN_MAX): then ask for a large finite number.
    if (rl.rlim_max == RLIM_INFINITY) want.rlim_cur = 1 << 20;
    if (::setrlimit(RLIMIT_NOFILE, &want) != 0 && rl.rlim_max == RLIM_INFINITY) {
      want.rlim_cur = 1 << 16;
      ::setrlimit(RLIMIT_NOFILE, &want);
    }
    ::getrlimit(RLIMIT_NOFILE, &rl);
  }
  return rl.rlim_cur;
}

bool descriptors_free(int n) {
  int fds[16];
  n = n < 16 ? n : 16;
  int got = 0;
  while (got < n && (fds[got] = ::open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0) ++got;
  for (int i = 0; i < got; ++i) ::close(fds[i]);
  return got == n;
}

int max_listen_backlog() {
  FILE* f = std::fopen("/proc/sys/net/core/somaxconn", "re");
  if (!f) return 0;
  int n = 0;
  if (std::fscanf(f, "%d", &n) != 1 || n < 0) n = 0;
  std::fclose(f);
  return n;
}

size_t page_size() {
  static const size_t n = size_t(::sysconf(_SC_PAGESIZE));
  return n;
}

void* map_pages(size_t bytes) {
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? nullptr : p;
}

void unmap_pages(void* p, size_t bytes) {
  ::munmap(p, bytes);
}

void discard_pages(void* p, size_t bytes) {
  ::madvise(p, bytes, MADV_DONTNEED);
}

void reuse_pages(void*, size_t) {}

void release_free_memory() {
#if defined(__GLIBC__)
  malloc_trim(0);
#endif
}

} // namespace faultline::uv::platform
