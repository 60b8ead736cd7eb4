#include "base/log.h"

#include <chrono>
#include <cstdio>
#include <ctime>

#include <fmt/chrono.h>

namespace faultline::log {

namespace {
Level g_level = Level::Info;
}

Level level() { return g_level; }
void set_level(Level l) { g_level = l; }

bool parse_level(std::string_view t, Level& out) {
  if (t == "debug") out = Level::Debug;
  else if (t == "info") out = Level::Info;
  else if (t == "warn" || t == "warning") out = Level::Warn;
  else if (t == "error") out = Level::Error;
  else if (t == "off" || t == "none") out = Level::Off;
  else return false;
  return true;
}

void write(Level l, std::string_view msg) {
  static constexpr const char* names[] = {"debug", "info ", "warn ", "error"};
  auto now = std::chrono::system_clock::now();
  auto secs = std::chrono::system_clock::to_time_t(now);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() %
            1000;
  const std::tm tm = fmt::gmtime(secs); // gmtime_r on POSIX, gmtime_s on Windows
  char ts[32];
  std::strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
  std::string line =
      fmt::format("{}.{:03}Z {} {}\n", ts, ms, names[static_cast<int>(l) & 3], msg);
  std::fwrite(line.data(), 1, line.size(), stderr);
  // stderr is unbuffered on POSIX; the Windows C runtime buffers it when it is a file or a
  // pipe, where a running faultline.exe's log would then show nothing until it exits.
  std::fflush(stderr);
}

} // namespace faultline::log
