#include "resp/writer.h"

#include <charconv>

namespace faultline::resp {

void Writer::header(char type, int64_t n) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, n);
  out_.push_back(type);
  out_.append(buf, size_t(r.ptr - buf));
  out_.append("\r\n", 2);
}

void Writer::line(char type, std::string_view text) {
  out_.push_back(type);
  size_t at = out_.size();
  out_.append(text);
  for (size_t i = at; i < out_.size(); ++i)
    if (out_[i] == '\r' || out_[i] == '\n') out_[i] = ' ';
  out_.append("\r\n", 2);
}

Writer& Writer::error(std::string_view text) {
  if (!text.empty() && text[0] == '-') text.remove_prefix(1);
  line('-', text);
  return *this;
}

Writer& Writer::simple(std::string_view text) {
  line('+', text);
  return *this;
}

Writer& Writer::bulk(std::string_view data) {
  header('$', int64_t(data.size()));
  out_.append(data);
  out_.append("\r\n", 2);
  return *this;
}

Writer& Writer::null() {
  out_.append(proto_ == Protocol::Resp3 ? "_\r\n" : "$-1\r\n");
  return *this;
}

Writer& Writer::null_array() {
  out_.append(proto_ == Protocol::Resp3 ? "_\r\n" : "*-1\r\n");
  return *this;
}

Writer& Writer::integer(int64_t v) {
  header(':', v);
  return *this;
}

Writer& Writer::array(size_t n) {
  header('*', int64_t(n));
  return *this;
}

Writer& Writer::push(size_t n) {
  header(proto_ == Protocol::Resp3 ? '>' : '*', int64_t(n));
  return *this;
}

Writer& Writer::bulk_array(std::initializer_list<std::string_view> items) {
  array(items.size());
  for (auto s : items) bulk(s);
  return *this;
}

} // namespace faultline::resp
