#pragma once

// `faultline ctl ...`: drives a running faultline (or Toxiproxy) through its HTTP API from a
// terminal. Exit codes: 0 success, 1 the API said no or could not be reached, 2 usage error.

#include <iosfwd>
#include <string>
#include <vector>

namespace faultline::control {

// argv[0] names the subcommand ("ctl"); the command and its options follow.
int run_ctl(int argc, char** argv);

// The same with the arguments after "ctl" and explicit streams, for tests. `env_token` stands in
// for FAULTLINE_API_TOKEN.
int run_ctl(const std::vector<std::string>& args, std::ostream& out, std::ostream& err,
            const std::string& env_token = {});

} // namespace faultline::control
