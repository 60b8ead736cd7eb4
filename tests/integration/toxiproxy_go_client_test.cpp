// Compatibility with Toxiproxy's own Go client: tests/clients/toxiproxy-go/compat/main.go drives
// the real binary with github.com/Shopify/toxiproxy/v2/client and checks each call's effect on
// Redis traffic and Toxiproxy's exact error strings. Built with Debian's golang-go in GOPATH mode
// (the client needs only Go's standard library).
//
// The client's source is not in this repository (nothing is vendored) and Debian does not
// package it (2026-12: no golang-github-shopify-toxiproxy-dev). The test looks where a Debian
// package would put it (/usr/share/gocode/src/github.com/Shopify/toxiproxy/v2/client) and in
// $FAULTLINE_TOXIPROXY_SRC (a Toxiproxy 2.12 source tree: the folder holding client/); without
// either, or without Go, it is skipped and says which is missing.

#include <cstdlib>
#include <filesystem>
#include <string>

#include <gtest/gtest.h>

#include "support/harness.h"

using namespace fltest;
namespace fs = std::filesystem;

namespace {

const std::string kGoDir = std::string(FAULTLINE_SOURCE_DIR) + "/tests/clients/toxiproxy-go";


TEST(ToxiproxyGoClient, DrivesFaultlineWithToxiproxysExactStrings) {
  int status = -1;
  std::string go = run_cmd("go version 2>&1", &status);
  if (status != 0)
    GTEST_SKIP() << "no Go toolchain (install Debian's golang-go: tools/deps.sh does): " << go;

  // A GOPATH in a scratch folder: the client's source linked in, the Go cache and the binary
  // out of the source tree.
  std::string work = temp_dir();
  const fs::path debian = "/usr/share/gocode";
  std::string gopath;
  if (fs::exists(debian / "src/github.com/Shopify/toxiproxy/v2/client/client.go")) {
    gopath = debian.string();
  } else if (const char* src = std::getenv("FAULTLINE_TOXIPROXY_SRC");
             src != nullptr && fs::exists(fs::path(src) / "client/client.go")) {
    gopath = work + "/gopath";
    fs::create_directories(gopath + "/src/github.com/Shopify/toxiproxy");
    fs::create_directory_symlink(fs::absolute(src), gopath + "/src/github.com/Shopify/toxiproxy/v2");
  } else {
    GTEST_SKIP() << "Toxiproxy's Go client is not installed: Debian does not package "
                    "github.com/Shopify/toxiproxy/v2/client and this repository vendors nothing; "
                    "set FAULTLINE_TOXIPROXY_SRC to a Toxiproxy 2.12 source tree to run this test";
  }
  std::string bin = work + "/compat";
  std::string build = "cd " + shell_quote(kGoDir) +
                      " && GO111MODULE=off GOFLAGS= GOPATH=" + shell_quote(gopath) +
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
