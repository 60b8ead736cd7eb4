// Compatibility with Toxiproxy's own Go client: tests/clients/toxiproxy-go/compat/main.go drives
// the real binary with github.com/Shopify/toxiproxy/v2/client (2.12, MIT; Debian does not package
// it, so its four files are kept in tests/clients/toxiproxy-go/gopath) and checks each call's
// effect on Redis traffic and Toxiproxy's exact error strings. Built with Debian's golang-go in
// GOPATH mode (the client needs only Go's standard library); skipped, saying why, only when
// there is no Go toolchain.

#include <filesystem>
#include <string>

#include <gtest/gtest.h>

#include "support/harness.h"

using namespace fltest;
namespace fs = std::filesystem;

namespace {

const std::string kGoDir = std::string(FAULTLINE_SOURCE_DIR) + "/tests/clients/toxiproxy-go";

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'')
      out += "'\\''";
    else
      out += c;
  }
  return out + "'";
}

TEST(ToxiproxyGoClient, DrivesFaultlineWithToxiproxysExactStrings) {
  int status = -1;
  std::string go = run_cmd("go version 2>&1", &status);
  if (status != 0)
    GTEST_SKIP() << "no Go toolchain (install Debian's golang-go: tools/deps.sh does): " << go;

  // Build into a scratch folder: the Go cache and the binary stay out of the source tree.
  std::string work = temp_dir();
  std::string bin = work + "/compat";
  std::string build = "cd " + shell_quote(kGoDir) +
                      " && GO111MODULE=off GOFLAGS= GOPATH=" + shell_quote(kGoDir + "/gopath") +
                      " GOCACHE=" + shell_quote(work + "/gocache") + " timeout 300 go build -o " +
                      shell_quote(bin) + " ./compat 2>&1";
  std::string out = run_cmd(build, &status);
  ASSERT_EQ(status, 0) << "go build failed:\n" << out;

  Redis redis;
  ASSERT_TRUE(redis.start());
  Faultline fl;
  ASSERT_TRUE(fl.start(redis.port())) << fl.process().log();
  ASSERT_TRUE(wait_port(fl.api_port())) << fl.process().log();

  std::string cmd = "FAULTLINE_API=127.0.0.1:" + std::to_string(fl.api_port()) +
                    " REDIS_UPSTREAM=127.0.0.1:" + std::to_string(redis.port()) + " timeout 90 " +
                    shell_quote(bin) + " 2>&1";
  out = run_cmd(cmd, &status);
  EXPECT_EQ(status, 0) << out << "\n--- faultline log ---\n" << fl.process().log();
  EXPECT_NE(out.find("compat: OK"), std::string::npos) << out;
  EXPECT_EQ(fl.stop(), 0) << fl.process().log();
}

} // namespace
