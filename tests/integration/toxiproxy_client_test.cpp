// Compatibility with a real Toxiproxy client: tests/clients/toxiproxy-node/compat.js drives the
// real binary with toxiproxy-node-client (from npm) and checks each call's effect on Redis
// traffic. The package is installed once into a cache folder ($FAULTLINE_NPM_CACHE, or
// ~/.cache/faultline-npm); if it cannot be installed the test fails, it does not skip.

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "support/harness.h"

using namespace fltest;
namespace fs = std::filesystem;

namespace {

const std::string kClientDir = std::string(FAULTLINE_SOURCE_DIR) + "/tests/clients/toxiproxy-node";


std::string npm_cache_dir() {
  if (const char* d = std::getenv("FAULTLINE_NPM_CACHE"); d && *d)
    return d;
  if (const char* h = std::getenv("HOME"); h && *h)
    return std::string(h) + "/.cache/faultline-npm";
  return (fs::temp_directory_path() / "faultline-npm").string();
}

std::string read_file(const fs::path& p) {
  std::ifstream f(p);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

// Installs the client into the cache (once: again only when package.json changes). Returns "" or
// what went wrong.
std::string install_client(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec)
    return "cannot create " + dir + ": " + ec.message();
  std::string wanted = read_file(kClientDir + "/package.json");
  if (wanted.empty())
    return "cannot read " + kClientDir + "/package.json";
  bool fresh = read_file(fs::path(dir) / "package.json") == wanted &&
               fs::exists(fs::path(dir) / "node_modules/toxiproxy-node-client/package.json");
  if (fresh)
    return "";
  {
    std::ofstream out(fs::path(dir) / "package.json");
    out << wanted;
  }
  int status = -1;
  // flock: two test runs at once share one install.
  std::string out = run_cmd("cd " + shell_quote(dir) + " && flock .install.lock timeout 180 npm " +
                                "install --no-audit --no-fund --no-package-lock 2>&1",
                            &status);
  if (status != 0 ||
      !fs::exists(fs::path(dir) / "node_modules/toxiproxy-node-client/package.json")) {
    fs::remove(fs::path(dir) / "package.json", ec); // try again next run
    return "npm install toxiproxy-node-client failed (is the npm registry reachable?):\n" + out;
  }
  return "";
}

} // namespace

TEST(ToxiproxyClient, NodeClientDrivesFaultline) {
  int status = -1;
  std::string node = run_cmd("node --version 2>&1", &status);
  ASSERT_EQ(status, 0) << "node is needed for the Toxiproxy client test: " << node;

  std::string dir = npm_cache_dir();
  std::string err = install_client(dir);
  ASSERT_TRUE(err.empty()) << err;

  Redis redis;
  ASSERT_TRUE(redis.start());
  Faultline fl;
  ASSERT_TRUE(fl.start(redis.port())) << fl.process().log();
  ASSERT_TRUE(wait_port(fl.api_port())) << fl.process().log();

  std::string cmd = "NODE_PATH=" + shell_quote(dir + "/node_modules") +
                    " FAULTLINE_API=http://127.0.0.1:" + std::to_string(fl.api_port()) +
                    " REDIS_UPSTREAM=127.0.0.1:" + std::to_string(redis.port()) +
                    " timeout 60 node " + shell_quote(kClientDir + "/compat.js") + " 2>&1";
  std::string out = run_cmd(cmd, &status);
  EXPECT_EQ(status, 0) << out << "\n--- faultline log ---\n" << fl.process().log();
  EXPECT_NE(out.find("compat: OK"), std::string::npos) << out;
  EXPECT_EQ(fl.stop(), 0) << fl.process().log();
}
