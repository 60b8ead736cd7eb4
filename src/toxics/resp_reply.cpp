// resp_reply: answer a matching command with a given reply instead of sending it to Redis.
// `reply` is a short form (nil, empty, empty_string, ok, int:N, bulk:TEXT, simple:TEXT,
// error:TEXT) or one complete RESP value written out ("$5\r\nhello\r\n"). Short forms are
// written in the session's protocol (nil is $-1 in RESP2 and _ in RESP3).

#include <charconv>

#include <fmt/format.h>

#include "resp/parser.h"
#include "resp/writer.h"
#include "toxics/resp_rule.h"

namespace faultline::toxics {

namespace {

enum class Form { Nil, Empty, EmptyString, Ok, Int, Bulk, Simple, Error, Raw };

struct RespReplyParams {
  std::string reply;
  FilterParams filter;
};

class RespReply final : public RespToxic<RespReplyParams> {
public:
  RespReply(RespReplyParams p, const AttrTable<RespReplyParams>& attrs)
      : RespToxic(std::move(p), attrs) {
    parse(p_.reply);
  }

protected:
  bool applies(const resp::RequestFrame& f, const RespContext& ctx) const override {
    // Replies in MONITOR and RESP2 pub/sub have their own shapes; inside MULTI a command's
    // reply is +QUEUED and its value arrives in EXEC's array, which Redis writes.
    if (ctx.monitoring || ctx.subscribed || ctx.in_multi) return false;
    // Commands that change the connection's mode: a made-up reply would leave the client and
    // Redis in different modes (one subscribed, one not; RESP3 against RESP2...).
    if (f.cmd) {
      switch (f.cmd->special) {
      case resp::Special::Subscribe:
      case resp::Special::Psubscribe:
      case resp::Special::Ssubscribe:
      case resp::Special::Unsubscribe:
      case resp::Special::Punsubscribe:
      case resp::Special::Sunsubscribe:
      case resp::Special::Monitor:
      case resp::Special::Multi:
      case resp::Special::Exec:
      case resp::Special::Discard:
      case resp::Special::ClientReply:
      case resp::Special::Hello:
      case resp::Special::Reset:
      case resp::Special::Quit:
        return false;
      default:
        break;
      }
    }
    return true;
  }
  RespAction act(const resp::RequestFrame&, const RespContext& ctx) const override {
    RespAction a;
    a.kind = RespActionKind::Inject;
    resp::Writer w(a.reply, ctx.protocol);
    switch (form_) {
    case Form::Nil: w.null(); break;
    case Form::Empty: w.array(0); break;
    case Form::EmptyString: w.bulk(""); break;
    case Form::Ok: w.simple("OK"); break;
    case Form::Int: w.integer(n_); break;
    case Form::Bulk: w.bulk(text_); break;
    case Form::Simple: w.simple(text_); break;
    case Form::Error: w.error(text_); break;
    case Form::Raw: a.reply = text_; break;
    }
    return a;
  }

private:
  void parse(const std::string& spec) {
    auto rest = [&](size_t prefix) { return spec.substr(prefix); };
    if (spec == "nil" || spec == "null") form_ = Form::Nil;
    else if (spec == "empty") form_ = Form::Empty;
    else if (spec == "empty_string") form_ = Form::EmptyString;
    else if (spec == "ok") form_ = Form::Ok;
    else if (spec.rfind("int:", 0) == 0) {
      form_ = Form::Int;
      std::string v = rest(4);
      auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n_);
      if (ec != std::errc() || p != v.data() + v.size())
        throw ToxicError(fmt::format("attribute 'reply': '{}' is not int:N", spec));
    } else if (spec.rfind("bulk:", 0) == 0) {
      form_ = Form::Bulk;
      text_ = rest(5);
    } else if (spec.rfind("simple:", 0) == 0) {
      form_ = Form::Simple;
      text_ = rest(7);
    } else if (spec.rfind("error:", 0) == 0) {
      form_ = Form::Error;
      text_ = rest(6);
    } else {
      // One complete RESP value, nothing after it.
      resp::ReplyParser parser;
      int frames = 0;
      uint64_t end = 0;
      auto st = parser.feed(spec.data(), spec.size(), [&](const resp::ReplyFrame& f) {
        ++frames;
        end = f.end;
      });
      if (st == resp::Status::Error || frames != 1 || end != spec.size())
        throw ToxicError("attribute 'reply' must be nil, empty, empty_string, ok, int:N, "
                         "bulk:TEXT, simple:TEXT, error:TEXT or one complete RESP value");
      form_ = Form::Raw;
      text_ = spec;
    }
    if ((form_ == Form::Simple || form_ == Form::Error) &&
        text_.find_first_of("\r\n") != std::string::npos)
      throw ToxicError("attribute 'reply': simple strings and errors must be one line");
  }

  Form form_ = Form::Nil;
  std::string text_;
  int64_t n_ = 0;
};

} // namespace

const ToxicType<RespReply> kRespReply{"resp_reply", 120, with_filter<RespReplyParams>({
    string_attr("reply", &RespReplyParams::reply, "", required,
                "`nil`, `empty` (empty array), `empty_string`, `ok`, `int:N`, `bulk:TEXT`, "
                "`simple:TEXT`, `error:TEXT`, or one complete RESP value "
                "(`\"*2\\r\\n:1\\r\\n:2\\r\\n\"`)"),
})};

} // namespace faultline::toxics
