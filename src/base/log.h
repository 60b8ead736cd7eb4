#pragma once
// Lifecycle events on stderr: "2026-11-29T05:10:00.123Z info  listening ...". Not the traffic log.

#include <fmt/format.h>
#include <string_view>

namespace faultline::log {

enum class Level { Debug = 0, Info = 1, Warn = 2, Error = 3, Off = 4 };

Level level();
void set_level(Level l);
bool parse_level(std::string_view text, Level& out);
void write(Level l, std::string_view msg);

template <class... Args> void at(Level l, fmt::format_string<Args...> f, Args&&... args) {
  if (l < level()) return;
  write(l, fmt::format(f, std::forward<Args>(args)...));
}
template <class... Args> void debug(fmt::format_string<Args...> f, Args&&... a) {
  at(Level::Debug, f, std::forward<Args>(a)...);
}
template <class... Args> void info(fmt::format_string<Args...> f, Args&&... a) {
  at(Level::Info, f, std::forward<Args>(a)...);
}
template <class... Args> void warn(fmt::format_string<Args...> f, Args&&... a) {
  at(Level::Warn, f, std::forward<Args>(a)...);
}
template <class... Args> void error(fmt::format_string<Args...> f, Args&&... a) {
  at(Level::Error, f, std::forward<Args>(a)...);
}

} // namespace faultline::log
