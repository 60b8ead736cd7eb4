#pragma once
// The /profiles routes of the control API and the `faultline profile` subcommand: the profile
// part's face on the API, so they sit in control, above profile (namespace profile all the same).
// The route table in control/api.cpp points here; errors are thrown as control::ApiError so the
// API's one error wrapper formats them.
//
//   POST   /profiles          TOML or JSON body; ?replace=true stops the running one first,
//                            ?speed=N runs the timeline N times faster. 201 + report; 400 for a
//                            bad profile (the message has line and column); 409 if one runs.
//   GET    /profiles          reports of the running profile and the last ones that ended
//   GET    /profiles/{name}   one report
//   DELETE /profiles/{name}   stop it (what it injected is undone); 204

#include "control/http_server.h"

namespace faultline::profile {

class Manager;

void api_start(Manager& m, control::Request& req, control::Response& res);
void api_list(Manager& m, control::Request& req, control::Response& res);
void api_show(Manager& m, control::Request& req, control::Response& res);
void api_stop(Manager& m, control::Request& req, control::Response& res);

// `faultline profile check FILE...` (argv[0] is "profile"). Exit 0, 2 for a bad profile.
int run_profile_command(int argc, char** argv);

} // namespace faultline::profile
