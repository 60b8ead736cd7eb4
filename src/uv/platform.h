#pragma once
// Everything that differs between POSIX and Windows and that libuv does not already cover.
// Declared once here, implemented twice: src/uv/platform/posix.cpp and .../windows.cpp, of
// which CMake compiles the one for the target. The rest of src/ has no #ifdef: it uses libuv
// (sockets, files, signals as libuv reports them) and these functions.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace faultline::uv::platform {

// First thing in main(). POSIX: SIGPIPE ignored (a write to a closed socket fails with EPIPE
// instead of killing the process). Windows: stdout and stderr in binary mode, so a traffic log
// written to stdout has "\n" line ends, byte for byte as on Linux.
void init_process();

// Whether fd (1: stdout, 2: stderr) is a terminal, for colour and progress output.
bool is_terminal(int fd);

// The two signals that stop faultline cleanly, as libuv's uv_signal_t delivers them: POSIX
// SIGINT and SIGTERM; Windows Ctrl-C (SIGINT) and Ctrl-Break (SIGBREAK), which is also what
// libuv reports for a console's close. And the name a log line gives one.
int interrupt_signal();
int terminate_signal();
const char* signal_name(int signum);

// Checks a name a request gave for a file under the confined log directory (uv/confined_open.h)
// for what only this platform treats specially. POSIX: nothing. Windows: '\' (a separator
// there, which would hide a ".." from the '/'-only checks) and ':' (drive letters, alternate
// data streams) are refused. False with err set.
bool check_confined_name(std::string_view name, std::string& err);

// Opens dir/parts[0]/.../parts[n-1] for reading and appending, creating the file (0644) when
// missing, never following a symbolic link below dir (dir itself is trusted). A file that
// exists must be a regular file. Returns a blocking fd usable with uv_fs_* (a CRT descriptor
// on Windows), or -1 with err set (`full` names the file in messages).
//   POSIX: openat() one directory at a time with O_NOFOLLOW: no race.
//   Windows: each component is checked with lstat (a reparse point is refused) before the
//   open; a link created between the check and the open is not caught (documented in
//   docs/building.md, "Windows").
int open_confined_append(const std::string& dir, const std::vector<std::string_view>& parts,
                         const std::string& full, std::string& err);

// Makes a file descriptor opened with UV_FS_O_NONBLOCK blocking again (for the thread pool's
// writes). Windows files have no such mode: nothing to do.
void set_blocking(int fd);

// Raises the soft limit on open descriptors to the hard limit, so that as many connections as
// the system allows this process can be served. Returns the limit in force afterwards and sets
// `before` to the soft limit found. POSIX: setrlimit(RLIMIT_NOFILE). Windows: sockets are not
// limited this way; returns 0 (nothing to raise, nothing to log).
uint64_t raise_fd_limit(uint64_t& before);

// Whether n more descriptors could be opened now (POSIX: opens /dev/null n times and closes
// them again: 2n system calls, for the rare moments near the limit). Windows: true.
bool descriptors_free(int n);

// The longest listen backlog the system grants (Linux: /proc/sys/net/core/somaxconn; a larger
// backlog asked of listen() is cut to it), or 0 when not known (other systems, Windows).
int max_listen_backlog();

// Hands the pages of freed heap memory back to the system, so that memory freed in the middle
// of the heap (idle sessions' RESP state) leaves the process's RSS too. glibc: malloc_trim(0),
// which walks the free lists (some milliseconds for a heap of 10,000 sessions). Elsewhere:
// nothing (the allocator decides).
void release_free_memory();

// Memory for uv::SlotPool: whole pages of their own, read-write.
size_t page_size();
void* map_pages(size_t bytes);            // nullptr when out of memory
void unmap_pages(void* p, size_t bytes);
// Hands the pages' memory back to the system, keeping the address range. POSIX:
// madvise(MADV_DONTNEED), after which they read as zeros. Windows: decommitted.
void discard_pages(void* p, size_t bytes);
// Makes discarded pages usable again. POSIX: nothing to do. Windows: committed again.
void reuse_pages(void* p, size_t bytes);

} // namespace faultline::uv::platform
