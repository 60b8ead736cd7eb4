// Paths the API names are confined to --log-dir: resolve() turns a request's path into one
// under the directory or says why not. (Opening, with its symbolic links, is tested end to end
// in tests/integration/api_test.cpp.)

#include <cstdlib>

#include <unistd.h>
#include <string>

#include <gtest/gtest.h>

#include "uv/confined_open.h"

namespace faultline::uv {
namespace {

struct Confined : ::testing::Test {
  ConfinedDir dir;
  std::string root, given;
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "confined-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    std::string err;
    // Through a symbolic link, as an operator's /var/log may be.
    given = tmpl + "-link";
    ASSERT_EQ(::symlink(tmpl.c_str(), given.c_str()), 0);
    ASSERT_TRUE(dir.set(given + "/", err)) << err;
    char real[4096];
    ASSERT_NE(::realpath(tmpl.c_str(), real), nullptr);
    root = real;
  }
  std::string ok(std::string_view name) {
    std::string out, err;
    EXPECT_TRUE(dir.resolve(name, out, err)) << name << ": " << err;
    return out;
  }
  std::string refused(std::string_view name) {
    std::string out, err;
    EXPECT_FALSE(dir.resolve(name, out, err)) << name << " -> " << out;
    return err;
  }
};

TEST_F(Confined, TheDirectoryIsResolvedOnce) {
  EXPECT_EQ(dir.path(), root);
  ConfinedDir bad;
  std::string err;
  EXPECT_FALSE(bad.set(root + "/missing", err));
  EXPECT_NE(err.find("missing"), std::string::npos) << err;
}

TEST_F(Confined, NamesInsideAreResolved) {
  EXPECT_EQ(ok("t.jsonl"), root + "/t.jsonl");
  EXPECT_EQ(ok("sub/t.jsonl"), root + "/sub/t.jsonl");
  EXPECT_EQ(ok(root + "/t.jsonl"), root + "/t.jsonl");
  EXPECT_EQ(ok(given + "/t.jsonl"), root + "/t.jsonl") << "the path as the operator wrote it";
  EXPECT_EQ(ok("..t"), root + "/..t") << "a name that starts with dots is a name";
}

TEST_F(Confined, EverythingElseIsRefused) {
  EXPECT_NE(refused("../t").find(".."), std::string::npos);
  refused("sub/../../t");
  refused("sub/..");
  refused("./t");
  refused("a//b");
  refused("");
  refused("sub/");
  refused(std::string("a\0b", 3));
  EXPECT_NE(refused("/etc/passwd").find("not inside"), std::string::npos);
  refused(root + "x/t"); // a sibling whose name starts with the directory's
  refused(root);
  refused(given);
  refused(given + "x/t");
}

} // namespace
} // namespace faultline::uv
