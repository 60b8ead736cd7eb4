#pragma once
// Prometheus text format helpers for whoever writes a section of /metrics (the proxy families
// in control/api.cpp, the per-command families in observe/metrics.cpp).

#include <string>
#include <string_view>

namespace faultline::observe {

// Appends "# HELP name help\n# TYPE name type\n".
void append_metric_header(std::string& out, std::string_view name, std::string_view help,
                          std::string_view type);
// A label value escaped per the text format: backslash, double quote and newline.
std::string escape_label_value(std::string_view value);

} // namespace faultline::observe
