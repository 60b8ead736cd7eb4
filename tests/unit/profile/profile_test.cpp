// Loading chaos profiles: the format, the flattened timeline, and every validation error with its
// exact message (file, line and column included).

#include <filesystem>
#include <string>

#include <gtest/gtest.h>

#include "profile/profile.h"

using namespace faultline::profile;

namespace {

std::string error_of(const std::string& text) {
  try {
    load_toml(text, "t.toml");
  } catch (const LoadError& e) {
    return e.what();
  }
  return "(loaded)";
}

std::string json_error_of(const std::string& text) {
  try {
    load_json(nlohmann::json::parse(text), "POST /profiles");
  } catch (const LoadError& e) {
    return e.what();
  }
  return "(loaded)";
}

} // namespace

TEST(ProfileDuration, ParsesUnits) {
  uint64_t ms = 0;
  std::string err;
  ASSERT_TRUE(parse_duration("250ms", ms, err));
  EXPECT_EQ(ms, 250u);
  ASSERT_TRUE(parse_duration("5s", ms, err));
  EXPECT_EQ(ms, 5000u);
  ASSERT_TRUE(parse_duration("1.5s", ms, err));
  EXPECT_EQ(ms, 1500u);
  ASSERT_TRUE(parse_duration("2m", ms, err));
  EXPECT_EQ(ms, 120000u);
  ASSERT_TRUE(parse_duration("1m30s", ms, err));
  EXPECT_EQ(ms, 90000u);
  ASSERT_TRUE(parse_duration("0s", ms, err));
  EXPECT_EQ(ms, 0u);
  for (const char* bad : {"", "5", "s", "5h", "-1s", "5 s", "1..5s", "0.5ms"})
    EXPECT_FALSE(parse_duration(bad, ms, err)) << bad;
}

TEST(ProfileDuration, Formats) {
  EXPECT_EQ(format_duration(0), "0s");
  EXPECT_EQ(format_duration(250), "250ms");
  EXPECT_EQ(format_duration(3000), "3s");
  EXPECT_EQ(format_duration(1500), "1.5s");
  EXPECT_EQ(format_duration(120000), "2m");
  EXPECT_EQ(format_duration(90000), "1m30s");
}

TEST(ProfileLoad, FullExample) {
  Profile p = load_toml(R"(
name = "failover"
description = "primary fails over"
seed = 42

[[steps]]
name = "loading"
at = "0s"
for = "3s"
toxic = { type = "resp_error", stream = "upstream", attributes = { preset = "loading" } }

[[steps]]
at = "3s"
for = "3s"
toxic = { type = "resp_error", attributes = { preset = "readonly" } }

[[steps]]
at = "6s"
action = "drop_connections"
reset = true

[[phases]]
name = "flap"
at = "10s"
repeat = 3
every = "5s"
steps = [ { at = "0s", for = "2s", action = "disable" } ]
)",
                        "failover.toml");
  EXPECT_EQ(p.name, "failover");
  EXPECT_EQ(p.description, "primary fails over");
  ASSERT_TRUE(p.seed);
  EXPECT_EQ(*p.seed, 42u);
  EXPECT_FALSE(p.loop);
  EXPECT_EQ(p.length_ms, 22000u); // last flap: 20s + 2s
  ASSERT_EQ(p.proxies.size(), 1u);
  EXPECT_EQ(p.proxies[0].name, "redis");
  ASSERT_EQ(p.steps.size(), 6u);
  EXPECT_EQ(p.steps[0].label, "loading");
  EXPECT_EQ(p.steps[0].toxic.name, "resp_error_loading") << "the default name says what it is";
  EXPECT_EQ(p.steps[0].toxic.stream, faultline::toxics::Stream::Upstream);
  EXPECT_EQ(p.steps[0].line, 6);
  EXPECT_EQ(p.steps[1].label, "resp_error readonly on redis (downstream)");
  EXPECT_EQ(p.steps[1].at_ms, 3000u);
  EXPECT_EQ(*p.steps[1].for_ms, 3000u);
  EXPECT_EQ(p.steps[2].action, Action::DropConnections);
  EXPECT_TRUE(p.steps[2].reset);
  for (int i = 0; i < 3; ++i) {
    const Step& s = p.steps[3 + static_cast<size_t>(i)];
    EXPECT_EQ(s.action, Action::Disable);
    EXPECT_EQ(s.at_ms, 10000u + 5000u * static_cast<uint64_t>(i));
    EXPECT_EQ(s.phase, "flap");
    EXPECT_EQ(s.repetition, i + 1);
  }
}

TEST(ProfileLoad, NameDefaultsToTheFileAndDurationSetsTheLength) {
  Profile p = load_toml("duration = \"10s\"\nloop = true\n", "dir/smoke.toml");
  EXPECT_EQ(p.name, "smoke");
  EXPECT_EQ(p.length_ms, 10000u);
  EXPECT_TRUE(p.loop);
  EXPECT_TRUE(p.steps.empty());
}

TEST(ProfileLoad, DeclaredProxiesAndSteppingBetweenThem) {
  Profile p = load_toml(R"(
[[proxies]]
name = "primary"
listen = "127.0.0.1:7001"
upstream = "127.0.0.1:6379"
[[proxies]]
name = "replica"
[[steps]]
at = "1s"
for = "1s"
proxy = "replica"
action = "accept_reset"
)",
                        "t.toml");
  ASSERT_EQ(p.proxies.size(), 2u);
  EXPECT_EQ(p.proxies[0].listen, "127.0.0.1:7001");
  EXPECT_EQ(p.proxies[1].listen, "");
  EXPECT_EQ(p.steps[0].proxy, "replica");
}

TEST(ProfileLoad, SameToxicBackToBackIsNotAnOverlap) {
  EXPECT_EQ(error_of(R"(
[[steps]]
at = "0s"
for = "2s"
toxic = { type = "latency", attributes = { latency = 10 } }
[[steps]]
at = "2s"
for = "2s"
toxic = { type = "latency", attributes = { latency = 20 } }
)"),
            "(loaded)");
}

TEST(ProfileLoad, DisableUntilAnEnable) {
  Profile p = load_toml(R"(
[[steps]]
at = "0s"
action = "disable"
[[steps]]
at = "2s"
action = "enable"
[[steps]]
at = "3s"
for = "1s"
action = "disable"
)",
                        "t.toml");
  EXPECT_EQ(p.length_ms, 4000u);
}

TEST(ProfileLoad, JsonHasTheSameShape) {
  Profile p = load_json(nlohmann::json::parse(R"({
    "name": "api", "seed": 7,
    "steps": [{"at": "0s", "for": "1s",
               "toxic": {"type": "resp_reply", "attributes": {"reply": "nil", "commands": ["GET"]}}}]
  })"),
                        "POST /profiles");
  EXPECT_EQ(p.name, "api");
  EXPECT_EQ(p.steps[0].toxic.attributes["commands"][0], "GET");
}

TEST(ProfileLoad, ShippedProfilesLoad) {
  std::filesystem::path dir =
      std::filesystem::path(__FILE__).parent_path().parent_path().parent_path().parent_path() /
      "profiles";
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().extension() != ".toml") continue;
    ++n;
    Profile p;
    EXPECT_NO_THROW(p = load_file(e.path().string())) << e.path();
    EXPECT_EQ(p.name, e.path().stem().string());
    EXPECT_EQ(p.proxies.size(), 1u);
    EXPECT_EQ(p.proxies[0].name, "redis");
    EXPECT_TRUE(p.proxies[0].listen.empty()) << "shipped profiles declare no addresses";
    if (!p.steps.empty()) {
      EXPECT_LT(p.steps.front().at_ms, 1000u) << "faults start at once";
    }
  }
  EXPECT_EQ(n, 13);
}

// ---- Validation errors: each message, with its line and column ----

TEST(ProfileErrors, TomlSyntax) {
  EXPECT_EQ(error_of("name = \"x\"\nseed = \n"),
            "t.toml:2:8: Error while parsing key-value pair: expected value, saw '\\n'");
}

TEST(ProfileErrors, UnknownTopLevelKey) {
  EXPECT_EQ(error_of("name = \"x\"\ndurtion = \"5s\"\n"),
            "t.toml:2:1: the profile: unknown key 'durtion' (expected one of: name, description, "
            "seed, loop, duration, proxies, steps, phases, expect)");
}

TEST(ProfileErrors, UnknownStepKey) {
  EXPECT_EQ(error_of("[[steps]]\nat = \"0s\"\nfro = \"3s\"\naction = \"disable\"\n"),
            "t.toml:3:1: step 1: unknown key 'fro' (expected one of: name, at, for, proxy, toxic, "
            "action, reset, master, mode, slots, to, batch, pace)");
}

TEST(ProfileErrors, UnknownToxicKey) {
  EXPECT_EQ(error_of("[[steps]]\nat = \"0s\"\nfor = \"1s\"\n"
                     "toxic = { type = \"latency\", atributes = { latency = 5 } }\n"),
            "t.toml:4:29: step 1: toxic: unknown key 'atributes' (expected one of: name, type, "
            "stream, toxicity, attributes)");
}

TEST(ProfileErrors, WrongTypeForDuration) {
  EXPECT_EQ(error_of("[[steps]]\nat = 5\naction = \"disable\"\n"),
            "t.toml:2:6: step 1: 'at' must be a duration such as \"5s\", \"500ms\" or \"1m\", "
            "not an integer");
}

TEST(ProfileErrors, BadDurationUnit) {
  EXPECT_EQ(error_of("[[steps]]\nat = \"0s\"\nfor = \"3h\"\naction = \"disable\"\n"),
            "t.toml:3:7: step 1: 'for': bad duration \"3h\" (a number and a unit: ms, s or m, "
            "e.g. \"5s\", \"500ms\", \"1m30s\")");
}

TEST(ProfileErrors, WrongTypeForLoopAndSeed) {
  EXPECT_EQ(error_of("loop = \"yes\"\n"),
            "t.toml:1:8: the profile: 'loop' must be a boolean, not a string");
  EXPECT_EQ(error_of("seed = 1.5\n"),
            "t.toml:1:8: the profile: 'seed' must be a non-negative integer, not a float");
}

TEST(ProfileErrors, MissingAt) {
  EXPECT_EQ(error_of("[[steps]]\naction = \"disable\"\n"),
            "t.toml:1:1: step 1: 'at' is missing (when the step happens, e.g. at = \"5s\")");
}

TEST(ProfileErrors, StepDoesNothingOrTwoThings) {
  EXPECT_EQ(error_of("[[steps]]\nat = \"1s\"\n"),
            "t.toml:1:1: step 1: needs 'toxic' or 'action' (what the step does)");
  EXPECT_EQ(error_of("[[steps]]\nat = \"1s\"\nfor = \"1s\"\naction = \"disable\"\n"
                     "toxic = { type = \"latency\" }\n"),
            "t.toml:4:10: step 1: has both 'toxic' and 'action' (a step does one thing)");
}

TEST(ProfileErrors, UnknownAction) {
  EXPECT_EQ(error_of("[[steps]]\nat = \"1s\"\naction = \"explode\"\n"),
            "t.toml:3:10: step 1: unknown action 'explode' (one of: disable, enable, "
            "drop_connections, accept_reset, accept_hang, cluster_failover, migrate_slots, "
            "sentinel_failover)");
}

TEST(ProfileErrors, ForOnAnInstantaneousAction) {
  EXPECT_EQ(error_of("[[steps]]\nat = \"1s\"\nfor = \"2s\"\naction = \"drop_connections\"\n"),
            "t.toml:3:7: step 1: 'for' cannot be used with action 'drop_connections' (it happens "
            "at once)");
}

TEST(ProfileErrors, UnknownToxicType) {
  EXPECT_EQ(error_of("[[steps]]\nat = \"1s\"\nfor = \"2s\"\ntoxic = { type = \"lag\" }\n"),
            "t.toml:4:18: step 1: toxic: unknown type 'lag' (one of: latency, bandwidth, "
            "slow_close, timeout, reset_peer, slicer, limit_data, noop, resp_error, resp_reply, "
            "resp_delay, resp_hang, resp_reset, resp_close, truncate, sentinel_stale)");
}

TEST(ProfileErrors, BadToxicAttribute) {
  EXPECT_EQ(error_of("[[steps]]\nat = \"1s\"\nfor = \"2s\"\n"
                     "toxic = { type = \"latency\", attributes = { latency = \"a lot\" } }\n"),
            "t.toml:4:54: step 1: toxic latency: attribute 'latency' must be a number");
  EXPECT_EQ(error_of("[[steps]]\nat = \"1s\"\nfor = \"2s\"\n"
                     "toxic = { type = \"resp_error\" }\n"),
            "t.toml:4:9: step 1: toxic resp_error: resp_error needs attribute 'preset' or "
            "'error'");
}

TEST(ProfileErrors, UnknownToxicAttributeAtItsLine) {
  // As the API refuses it: the name, and the names the type takes, at the key's own line.
  EXPECT_EQ(error_of("[[steps]]\nat = \"1s\"\nfor = \"2s\"\n"
                     "[steps.toxic]\ntype = \"latency\"\n"
                     "[steps.toxic.attributes]\nlatency = 10\nlatncy = 300\n"),
            "t.toml:8:10: step 1: toxic latency: unknown attribute 'latncy': latency takes "
            "latency, jitter");
  EXPECT_EQ(error_of("[[steps]]\nat = \"1s\"\nfor = \"2s\"\n"
                     "toxic = { type = \"resp_error\", attributes = { preset = \"loading\", "
                     "key = \"user:*\" } }\n")
                .rfind("t.toml:4:73: step 1: toxic resp_error: unknown attribute 'key': resp_error "
                       "takes preset, error, address, commands, keys, ",
                       0),
            0u);
}

TEST(ProfileErrors, BadStreamAndToxicity) {
  EXPECT_EQ(error_of("[[steps]]\nat = \"1s\"\nfor = \"2s\"\n"
                     "toxic = { type = \"latency\", stream = \"sideways\" }\n"),
            "t.toml:4:38: step 1: toxic: 'stream' must be \"upstream\" or \"downstream\", not "
            "\"sideways\"");
  EXPECT_EQ(error_of("[[steps]]\nat = \"1s\"\nfor = \"2s\"\n"
                     "toxic = { type = \"latency\", toxicity = 1.5 }\n"),
            "t.toml:4:40: step 1: toxic: 'toxicity' must be between 0 and 1");
}

TEST(ProfileErrors, OverlappingStepsAddTheSameToxicTwice) {
  EXPECT_EQ(error_of(R"(name = "x"

[[steps]]
at = "0s"
for = "5s"
toxic = { type = "latency", attributes = { latency = 100 } }

[[steps]]
at = "4s"
for = "2s"
toxic = { type = "latency", attributes = { latency = 10 } }
)"),
            "t.toml:8:1: step 2: adds toxic 'latency_downstream' to proxy 'redis' at 4s while the "
            "step at line 3 has it (0s to 5s); give one of them another toxic name");
}

TEST(ProfileErrors, OverlapBetweenAPhaseAndAStep) {
  EXPECT_EQ(error_of(R"([[steps]]
at = "0s"
for = "3s"
action = "disable"

[[phases]]
name = "flap"
repeat = 3
every = "2s"
steps = [ { at = "0s", for = "1s", action = "disable" } ]
)"),
            "t.toml:10:11: phase 'flap' step 1 (repetition 1): disables proxy 'redis' at 0s while "
            "the step at line 1 has it disabled (0s to 3s)");
}

TEST(ProfileErrors, EnableInsideATimedDisable) {
  EXPECT_EQ(error_of("[[steps]]\nat = \"0s\"\nfor = \"5s\"\naction = \"disable\"\n"
                     "[[steps]]\nat = \"2s\"\naction = \"enable\"\n"),
            "t.toml:5:1: step 2: enables proxy 'redis' at 2s while the step at line 1 has it "
            "disabled (0s to 5s)");
}

TEST(ProfileErrors, StepAfterTheEnd) {
  EXPECT_EQ(error_of("duration = \"10s\"\n[[steps]]\nat = \"12s\"\naction = \"drop_connections\"\n"),
            "t.toml:2:1: step 1: starts at 12s, after the end of the profile (duration = "
            "\"10s\")");
  EXPECT_EQ(error_of("duration = \"10s\"\n[[steps]]\nat = \"8s\"\nfor = \"5s\"\n"
                     "action = \"disable\"\n"),
            "t.toml:2:1: step 1: ends at 13s, after the end of the profile (duration = \"10s\")");
}

TEST(ProfileErrors, PhaseRepeatsPastTheEnd) {
  EXPECT_EQ(error_of("duration = \"20s\"\n[[phases]]\nrepeat = 5\nevery = \"5s\"\n"
                     "[[phases.steps]]\nat = \"0s\"\nfor = \"1s\"\naction = \"disable\"\n"),
            "t.toml:5:1: phase 1 step 1 (repetition 5): starts at 20s, after the end of the "
            "profile (duration = \"20s\")");
}

TEST(ProfileErrors, PhaseStepLongerThanThePeriod) {
  EXPECT_EQ(error_of("[[phases]]\nname = \"flap\"\nrepeat = 2\nevery = \"5s\"\n"
                     "[[phases.steps]]\nat = \"3s\"\nfor = \"3s\"\naction = \"disable\"\n"),
            "t.toml:5:1: phase 'flap' step 1: ends at 6s, after the phase repeats (every = "
            "\"5s\")");
}

TEST(ProfileErrors, PhaseWithoutEvery) {
  EXPECT_EQ(error_of("[[phases]]\nrepeat = 2\nsteps = [ { at = \"0s\", action = \"enable\" } ]\n"),
            "t.toml:1:1: phase 1: 'every' is missing (how often the phase repeats)");
}

TEST(ProfileErrors, UnknownProxy) {
  EXPECT_EQ(error_of("[[steps]]\nat = \"0s\"\nproxy = \"cache\"\naction = \"enable\"\n"),
            "t.toml:3:9: step 1: unknown proxy 'cache' (the profile declares: redis)");
}

TEST(ProfileErrors, BadProxyDeclarations) {
  EXPECT_EQ(error_of("[[proxies]]\nname = \"a\"\nlisten = \"nowhere\"\n"),
            "t.toml:3:10: proxy 1: 'listen': bad address 'nowhere' (expected host:port)");
  EXPECT_EQ(error_of("[[proxies]]\nname = \"a\"\n[[proxies]]\nname = \"a\"\n"),
            "t.toml:4:8: proxy 2: proxy 'a' is declared twice");
}

TEST(ProfileErrors, NoLength) {
  EXPECT_EQ(error_of("name = \"empty\"\n"),
            "t.toml: the profile ends at 0s: give it a 'duration' or its steps a 'for'");
}

TEST(ProfileErrors, JsonErrorsNameThePlace) {
  EXPECT_EQ(json_error_of(R"({"steps": [{"at": "1s", "for": 2, "action": "disable"}]})"),
            "POST /profiles: step 1: 'for' must be a duration such as \"5s\", \"500ms\" or "
            "\"1m\", not an integer");
  EXPECT_EQ(json_error_of(R"({"steps": [{"at": "1s", "action": "disable", "x": null}]})"),
            "POST /profiles: steps[0].x: null is not allowed (leave the key out)");
}

TEST(ProfileErrors, FileThatCannotBeOpened) {
  try {
    load_file("/nonexistent/p.toml");
    FAIL();
  } catch (const LoadError& e) {
    EXPECT_EQ(std::string(e.what()), "/nonexistent/p.toml: cannot open: No such file or directory");
  }
}

// ---- Actions on the deployment: cluster_failover, migrate_slots, sentinel_failover ----

namespace {

std::string mode_error_of(const std::string& text, Mode mode) {
  try {
    load_toml(text, "t.toml", LoadOptions{mode});
  } catch (const LoadError& e) {
    return e.what();
  }
  return "(loaded)";
}

} // namespace

TEST(ProfileDeploymentActions, LoadTheirFields) {
  Profile p = load_toml("duration = \"20s\"\n"
                        "[[steps]]\nat = \"1s\"\naction = \"cluster_failover\"\n"
                        "master = \"slot 0\"\nmode = \"force\"\n"
                        "[[steps]]\nat = \"2s\"\naction = \"migrate_slots\"\nslots = \"0-99\"\n"
                        "to = \"127.0.0.1:7001\"\nbatch = 5\npace = \"20ms\"\n"
                        "[[steps]]\nat = \"3s\"\naction = \"migrate_slots\"\nslots = 7\n"
                        "to = \"node-127.0.0.1-7002\"\n",
                        "t.toml", LoadOptions{Mode::Cluster});
  ASSERT_EQ(p.steps.size(), 3u);
  EXPECT_TRUE(p.all_proxies);
  EXPECT_TRUE(p.proxies.empty());
  const Step& f = p.steps[0];
  EXPECT_EQ(f.action, Action::ClusterFailover);
  EXPECT_TRUE(f.proxy.empty());
  EXPECT_TRUE(f.instantaneous());
  EXPECT_EQ(f.deployment.master, "slot 0");
  EXPECT_EQ(f.deployment.mode, "force");
  EXPECT_EQ(f.describe(), "cluster failover of slot 0 (force)");
  const Step& m = p.steps[1];
  EXPECT_EQ(m.action, Action::MigrateSlots);
  EXPECT_EQ(m.deployment.first_slot, 0);
  EXPECT_EQ(m.deployment.last_slot, 99);
  EXPECT_EQ(m.deployment.to, "127.0.0.1:7001");
  EXPECT_EQ(m.deployment.batch, 5u);
  EXPECT_EQ(m.deployment.pace_ms, 20u);
  EXPECT_EQ(m.describe(), "migrate slots 0-99 to 127.0.0.1:7001");
  EXPECT_EQ(p.steps[2].deployment.first_slot, 7);
  EXPECT_EQ(p.steps[2].deployment.last_slot, 7);
  EXPECT_EQ(p.steps[2].deployment.batch, 10u);
  Profile s = load_toml("[[steps]]\nat = \"1s\"\naction = \"sentinel_failover\"\n", "t.toml",
                        LoadOptions{Mode::Sentinel});
  EXPECT_EQ(s.steps[0].action, Action::SentinelFailover);
  EXPECT_EQ(to_json(s.steps[0])["action"], "sentinel_failover");
  // `faultline profile check` knows no mode: the actions load, the default proxy stays.
  Profile c = load_toml("[[steps]]\nat = \"1s\"\naction = \"sentinel_failover\"\n", "t.toml");
  EXPECT_EQ(c.proxies.size(), 1u);
}

TEST(ProfileDeploymentActions, NeedTheirMode) {
  const std::string failover = "name = \"x\"\n[[steps]]\nat = \"1s\"\n"
                               "action = \"cluster_failover\"\nmaster = \"slot 0\"\n";
  EXPECT_EQ(mode_error_of(failover, Mode::Single),
            "t.toml:4:10: step 1: action 'cluster_failover' needs cluster mode (faultline "
            "--cluster HOST:PORT), and this run fronts a single Redis");
  EXPECT_EQ(mode_error_of(failover, Mode::Sentinel),
            "t.toml:4:10: step 1: action 'cluster_failover' needs cluster mode (faultline "
            "--cluster HOST:PORT), and this run is in sentinel mode");
  EXPECT_EQ(mode_error_of("[[steps]]\nat = \"1s\"\naction = \"sentinel_failover\"\n",
                          Mode::Cluster),
            "t.toml:3:10: step 1: action 'sentinel_failover' needs sentinel mode (faultline "
            "--sentinel HOST:PORT --master NAME), and this run is in cluster mode");
  // The API's JSON has no lines: the step and the field are named.
  try {
    load_json(nlohmann::json::parse(R"({"steps": [{"at": "1s", "action": "migrate_slots",
               "slots": "0-9", "to": "slot 16383"}]})"),
              "POST /profiles", LoadOptions{Mode::Single});
    FAIL() << "loaded";
  } catch (const LoadError& e) {
    EXPECT_STREQ(e.what(), "POST /profiles: step 1: action 'migrate_slots' needs cluster mode "
                           "(faultline --cluster HOST:PORT), and this run fronts a single Redis");
  }
}

TEST(ProfileDeploymentActions, BadFields) {
  auto err = [](const std::string& step) {
    return mode_error_of("[[steps]]\nat = \"1s\"\n" + step, Mode::Cluster);
  };
  EXPECT_EQ(err("action = \"cluster_failover\"\n"),
            "t.toml:1:1: step 1: 'master' is missing (which master: \"slot N\", \"IP:PORT\", a "
            "node id or \"node-IP-PORT\")");
  EXPECT_EQ(err("action = \"cluster_failover\"\nmaster = \"slot 16384\"\n"),
            "t.toml:4:10: step 1: 'master': \"slot 16384\": a slot is a number from 0 to 16383");
  EXPECT_EQ(err("action = \"cluster_failover\"\nmaster = \"the big one\"\n"),
            "t.toml:4:10: step 1: 'master': \"the big one\" names no master: give \"slot N\" "
            "(the master serving slot N), a node's \"IP:PORT\", its node id, or its proxy's name "
            "(\"node-IP-PORT\")");
  EXPECT_EQ(err("action = \"cluster_failover\"\nmaster = \"slot 1\"\nmode = \"hard\"\n"),
            "t.toml:5:8: step 1: 'mode' must be \"force\" or \"takeover\" (or left out), not "
            "\"hard\"");
  EXPECT_EQ(err("action = \"cluster_failover\"\nmaster = \"slot 1\"\nfor = \"1s\"\n"),
            "t.toml:5:7: step 1: 'for' cannot be used with action 'cluster_failover' (it starts "
            "at 'at' and runs to its end; it is not undone)");
  EXPECT_EQ(err("action = \"cluster_failover\"\nmaster = \"slot 1\"\nproxy = \"node-a\"\n"),
            "t.toml:5:9: step 1: 'proxy' does not apply to action 'cluster_failover' (it acts on "
            "the deployment, not on a proxy)");
  EXPECT_EQ(err("action = \"cluster_failover\"\nmaster = \"slot 1\"\nslots = 5\n"),
            "t.toml:5:9: step 1: 'slots' does not apply to action 'cluster_failover' (it is a "
            "field of action 'migrate_slots')");
  EXPECT_EQ(err("action = \"migrate_slots\"\nto = \"slot 0\"\n"),
            "t.toml:1:1: step 1: 'slots' is missing (e.g. slots = \"0-99\" or slots = 7)");
  EXPECT_EQ(err("action = \"migrate_slots\"\nslots = \"9-3\"\nto = \"slot 0\"\n"),
            "t.toml:4:9: step 1: 'slots': \"9-3\" ends before it starts");
  EXPECT_EQ(err("action = \"migrate_slots\"\nslots = \"0-16384\"\nto = \"slot 0\"\n"),
            "t.toml:4:9: step 1: 'slots' must be a slot (0 to 16383) or a range \"FIRST-LAST\"");
  EXPECT_EQ(err("action = \"migrate_slots\"\nslots = 3\nto = \"slot 0\"\nbatch = 0\n"),
            "t.toml:6:9: step 1: 'batch' must be an integer from 1 to 10000 (keys per MIGRATE)");
  EXPECT_EQ(err("action = \"migrate_slots\"\nslots = 3\n"),
            "t.toml:1:1: step 1: 'to' is missing (which master: \"slot N\", \"IP:PORT\", a node "
            "id or \"node-IP-PORT\")");
  EXPECT_EQ(err("action = \"disable\"\nproxy = \"node-1\"\nmaster = \"slot 0\"\n"),
            "t.toml:5:10: step 1: 'master' does not apply to action 'disable' (it is a field of "
            "action 'cluster_failover')");
  // In cluster mode without [[proxies]], a proxy step must name its node's proxy.
  EXPECT_EQ(err("action = \"disable\"\n"),
            "t.toml:1:1: step 1: 'proxy' is missing (in cluster mode a profile without "
            "[[proxies]] acts on every node's proxy: name one, e.g. \"node-127.0.0.1-7000\")");
}
