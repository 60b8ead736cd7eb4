// The registry of toxic types and their attribute tables: every type registers itself from its
// own file (none may be lost at link time), listings keep their order, a table lists a type's
// names, and the reference tables in docs/ are the ones the tables generate.

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "toxics/attributes.h"
#include "toxics/registry.h"
#include "toxics/toxic.h"

namespace faultline::toxics {
namespace {

using nlohmann::json;
using Names = std::vector<std::string_view>;

TEST(ToxicRegistry, EveryTypeIsRegisteredInListingOrder) {
  // Toxiproxy's types in Toxiproxy's order, then faultline's: the API and error messages list
  // them so. A type whose file the linker dropped would be missing here.
  EXPECT_EQ(type_names(), std::vector<std::string>(
                              {"latency", "bandwidth", "slow_close", "timeout", "reset_peer",
                               "slicer", "limit_data", "noop", "resp_error", "resp_reply",
                               "resp_delay", "resp_hang", "resp_reset", "resp_close", "truncate",
                               "sentinel_stale"}));
  EXPECT_FALSE(known_type("lag"));
  EXPECT_THROW(make_impl("lag", json::object()), ToxicError);
  EXPECT_THROW(make_impl("latency", json::array()), ToxicError);
}

TEST(ToxicAttributeTable, ListsEveryNameATypeReads) {
  EXPECT_EQ(attribute_names("latency"), Names({"latency", "jitter"}));
  EXPECT_EQ(attribute_names("slicer"), Names({"average_size", "size_variation", "delay"}));
  // RESP types: their own, then the shared filter's.
  EXPECT_EQ(attribute_names("resp_delay"), Names({"phase", "delay", "jitter", "commands", "keys",
                                                  "probability", "first", "every", "after"}));
  EXPECT_EQ(attribute_names("resp_hang"),
            Names({"commands", "keys", "probability", "first", "every", "after"}));
  EXPECT_EQ(attribute_names("resp_reset"), attribute_names("resp_close"));
  EXPECT_TRUE(attribute_names("lag").empty());
}

TEST(ToxicAttributeTable, UnknownNamesAreRefusedWithTheTypesNames) {
  auto message = [](const char* type, const json& attrs) {
    try {
      make_impl(type, attrs);
    } catch (const ToxicError& e) {
      return std::string(e.what()) + " [" + e.attribute + "]";
    }
    return std::string("accepted");
  };
  EXPECT_EQ(message("latency", {{"latency", 5}, {"latncy", 300}}),
            "unknown attribute 'latncy': latency takes latency, jitter [latncy]");
  EXPECT_EQ(message("resp_hang", {{"key", "user:*"}}),
            "unknown attribute 'key': resp_hang takes commands, keys, probability, first, every, "
            "after [key]");
  EXPECT_EQ(message("noop", {{"latency", 1}}),
            "unknown attribute 'latency': noop takes no attributes [latency]");
  // null is "not given" everywhere: an unknown name set to null sets nothing and passes.
  EXPECT_EQ(make_impl("latency", {{"latency", 5}, {"latncy", nullptr}})->attributes(),
            json({{"latency", 5}, {"jitter", 0}}));
  // The counters a RESP toxic shows are taken back (PATCH merges what it shows, and clients
  // send a toxic's attributes back as they read them), and change nothing.
  json shown = make_impl("resp_hang", {{"keys", "a*"}})->attributes();
  EXPECT_TRUE(shown.contains("matched"));
  EXPECT_EQ(make_impl("resp_hang", shown)->attributes(), shown);
  EXPECT_EQ(make_impl("resp_hang", {{"matched", 3}, {"injected", 1}})->attributes()["matched"], 0);
  // ...but they are not attributes one can set, so a listing does not offer them.
  EXPECT_EQ(message("resp_hang", {{"matchd", 1}}).find("matched"), std::string::npos);
}

TEST(ToxicAttributeTable, NoopTakesNothingAndShowsNothing) {
  EXPECT_EQ(make_impl("noop", json::object())->attributes(), json::object());
  EXPECT_EQ(make_impl("noop", nullptr)->attributes(), json::object());
  EXPECT_TRUE(attribute_names("noop").empty());
}

TEST(ToxicAttributeTable, RespAttributesKeepTheirShape) {
  // The filter's optional counts appear once set; probability and commands always.
  json hang = make_impl("resp_hang", json::object())->attributes();
  EXPECT_EQ(hang, json({{"commands", json::array()},
                        {"probability", 1.0},
                        {"matched", 0},
                        {"injected", 0}}));
  // An error text loses its '-'; a preset hides `error`, and `address` shows only for
  // the redirections.
  json err = make_impl("resp_error", {{"error", "-ERR x"}, {"keys", "a*"}, {"after", 2}})
                 ->attributes();
  EXPECT_EQ(err, json({{"error", "ERR x"},
                       {"commands", json::array()},
                       {"keys", "a*"},
                       {"probability", 1.0},
                       {"after", 2},
                       {"matched", 0},
                       {"injected", 0}}));
  json ro = make_impl("resp_error", {{"preset", "readonly"}, {"error", 5}})->attributes();
  EXPECT_EQ(ro["preset"], "readonly");
  EXPECT_FALSE(ro.contains("error"));
  EXPECT_FALSE(ro.contains("address"));
  EXPECT_EQ(ro["commands"], json({"@write"})); // the preset's own commands
  json moved = make_impl("resp_error", {{"preset", "moved"}})->attributes();
  EXPECT_EQ(moved["address"], "");  // the proxy's own listener, or the slot owner's
  // Given commands win over the preset's, even none.
  EXPECT_EQ(make_impl("resp_error", {{"preset", "readonly"}, {"commands", json::array()}})
                ->attributes()["commands"],
            json::array());
  EXPECT_EQ(make_impl("resp_reset", json::object())->attributes()["phase"], "before");
  EXPECT_EQ(make_impl("resp_close", {{"phase", "after"}})->attributes()["phase"], "after");
  EXPECT_EQ(make_impl("resp_delay", {{"delay", 5}})->attributes()["phase"], "request");
  EXPECT_EQ(make_impl("truncate", {{"bytes", 3}})->attributes()["bytes"], 3);
  // What the API's PATCH does: the attributes shown, merged with a change, parse again.
  json patched = make_impl("resp_error", {{"preset", "loading"}, {"first", 3}})->attributes();
  patched["first"] = 4;
  EXPECT_EQ(make_impl("resp_error", patched)->attributes()["first"], 4);
}

TEST(ToxicAttributeTable, MessagesNameTheAttribute) {
  auto message = [](const char* type, const json& attrs) {
    try {
      make_impl(type, attrs);
    } catch (const ToxicError& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_EQ(message("latency", {{"latency", "x"}}), "attribute 'latency' must be a number");
  EXPECT_EQ(message("latency", {{"jitter", 1.5}}), "attribute 'jitter' must be a whole number");
  EXPECT_EQ(message("bandwidth", {{"rate", -1}}),
            "attribute 'rate' is out of range (0..100000000)");
  EXPECT_EQ(message("bandwidth", {{"rate", 1e19}}),
            "attribute 'rate' is out of range (0..100000000)");
  // Equal is what Toxiproxy's own examples use; larger makes Toxiproxy's slicer cut outside the
  // chunk (and panic).
  EXPECT_EQ(message("slicer", {{"average_size", 4}, {"size_variation", 4}}), "accepted");
  EXPECT_EQ(message("slicer", {{"average_size", 4}, {"size_variation", 5}}),
            "attribute 'size_variation' must not be greater than 'average_size'");
  EXPECT_EQ(message("resp_hang", {{"probability", 2}}),
            "attribute 'probability' is out of range (0..1)");
  EXPECT_EQ(message("resp_hang", {{"keys", 1}}),
            "attribute 'keys' must be a string (a Redis glob)");
  EXPECT_EQ(message("resp_hang", {{"commands", 1}}),
            "attribute 'commands' must be an array of strings or a comma-separated string");
  EXPECT_EQ(message("resp_hang", {{"commands", {1}}}),
            "attribute 'commands' must be an array of strings");
  EXPECT_EQ(message("resp_hang", {{"commands", "@nope"}}),
            "attribute 'commands': unknown category '@nope'");
  EXPECT_EQ(message("resp_reset", {{"phase", "later"}}),
            "attribute 'phase' must be one of: before, after (got 'later')");
  EXPECT_EQ(message("resp_delay", {{"phase", 1}}),
            "attribute 'phase' must be one of: request, reply");
  EXPECT_EQ(message("resp_error", json::object()),
            "resp_error needs attribute 'preset' or 'error'");
  EXPECT_EQ(message("resp_error", {{"error", ""}}),
            "attribute 'error' must be a non-empty string");
  EXPECT_EQ(message("resp_error", {{"error", "a\nb"}}), "attribute 'error' must be one line");
  EXPECT_EQ(message("resp_error", {{"preset", 1}}), "attribute 'preset' must be a string");
  EXPECT_EQ(message("resp_error", {{"preset", "x"}, {"error", "y"}}).rfind(
                "attribute 'preset': unknown preset 'x' (one of: loading, readonly, ", 0),
            0u);
  EXPECT_EQ(message("resp_error", {{"preset", "moved"}, {"address", 7}}),
            "attribute 'address' must be a string (host:port)");
  EXPECT_EQ(message("resp_reply", json::object()), "resp_reply needs attribute 'reply'");
  EXPECT_EQ(message("resp_reply", {{"reply", 1}}), "attribute 'reply' must be a string");
}

// ---- the docs' reference tables ----

std::string read_doc(const std::string& name) {
  std::ifstream in(std::string(FAULTLINE_SOURCE_DIR) + "/docs/" + name);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void expect_doc_has(const std::string& doc, AttrDoc which) {
  std::string text = read_doc(doc);
  ASSERT_FALSE(text.empty()) << "cannot read docs/" << doc;
  std::string table = attribute_table_markdown(which);
  EXPECT_NE(text.find(table), std::string::npos)
      << "docs/" << doc << " does not contain the table the attribute tables generate; "
      << "replace its table with:\n"
      << table;
}

TEST(ToxicAttributeDocs, DocsHoldTheGeneratedTables) {
  expect_doc_has("toxics.md", AttrDoc::ConnectionToxics);
  expect_doc_has("resp-faults.md", AttrDoc::RespToxics);
  expect_doc_has("resp-faults.md", AttrDoc::RespFilter);
}

TEST(ToxicAttributeDocs, EveryAttributeHasARow) {
  std::string all = attribute_table_markdown(AttrDoc::ConnectionToxics) +
                    attribute_table_markdown(AttrDoc::RespToxics) +
                    attribute_table_markdown(AttrDoc::RespFilter);
  for (const auto& type : type_names())
    for (std::string_view name : attribute_names(type))
      EXPECT_NE(all.find("| `" + std::string(name) + "` |"), std::string::npos)
          << type << "." << name;
  for (const auto& t : registered_types())
    for (const auto& a : t.attrs) EXPECT_FALSE(a.doc.empty()) << t.name << "." << a.name;
}

// The default name: Toxiproxy's `<type>_<stream>` for its types, what the toxic does for
// faultline's RESP types (the API, ctl, the Python helper and profiles all use this one).
TEST(ToxicRegistry, DefaultNamesSayWhatTheToxicIs) {
  auto name = [](std::string_view type, Stream s, const json& attrs) {
    auto impl = make_impl(type, attrs);
    return default_name(type, s, impl.get());
  };
  EXPECT_EQ(name("latency", Stream::Downstream, json::object()), "latency_downstream");
  EXPECT_EQ(name("limit_data", Stream::Upstream, {{"bytes", 10}}), "limit_data_upstream");
  EXPECT_EQ(default_name("latency", Stream::Upstream, nullptr), "latency_upstream");
  EXPECT_EQ(name("resp_error", Stream::Upstream, {{"preset", "loading"}}), "resp_error_loading");
  EXPECT_EQ(name("resp_error", Stream::Downstream, {{"error", "ERR boom"}, {"commands", {"GET"}}}),
            "resp_error_err_GET");
  EXPECT_EQ(name("resp_error", Stream::Upstream,
                 {{"preset", "readonly"}, {"commands", {"SET", "@write", "INCR", "DEL"}}}),
            "resp_error_readonly_SET+write+INCR+more");
  EXPECT_EQ(name("resp_reply", Stream::Upstream, {{"reply", "int:5"}, {"commands", {"INCR"}}}),
            "resp_reply_int_INCR");
  EXPECT_EQ(name("resp_reply", Stream::Upstream, {{"reply", "*0\r\n"}}), "resp_reply_raw");
  EXPECT_EQ(name("resp_delay", Stream::Upstream, {{"delay", 5}}), "resp_delay_request");
  EXPECT_EQ(name("resp_hang", Stream::Upstream, {{"commands", {"BLPOP"}}}), "resp_hang_BLPOP");
  EXPECT_EQ(name("resp_reset", Stream::Upstream, {{"phase", "after"}}), "resp_reset_after");
  // Only what a URL path segment carries as is.
  EXPECT_EQ(name("resp_error", Stream::Upstream,
                 {{"error", "ERR?x boom"}, {"commands", {"CLIENT|SETNAME"}}}),
            "resp_error_errx_CLIENTSETNAME");
}

} // namespace
} // namespace faultline::toxics
