// The CLI's command groups, one file each.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/options.h"
#include "common/error.h"
#include "common/fd.h"

namespace keel::cli {

int service_main(const std::vector<std::string>& args); // service_cmd.cc
int config_main(const std::vector<std::string>& args);  // config_cmd.cc
int run_main(const std::vector<std::string>& args);     // workload_cmd.cc
int workload_main(const std::string& cmd,
                  const std::vector<std::string>& args); // ps stop kill rm logs
int exec_main(const std::vector<std::string>& args);
// The option tables of those verbs (workload_cmd.cc), for the parser's unit tests too.
VerbSpec run_options();
VerbSpec exec_options();
VerbSpec workload_options(const std::string& cmd);
// `pass_fd` travels with the request (keel image import hands over the open archive).
// A descriptor keeld sends back (the pty master of -it) lands in `received`.
Result<nlohmann::json> user_request(const nlohmann::json& req, int pass_fd = -1,
                                    Fd* received = nullptr);
int image_main(const std::vector<std::string>& args); // image_cmd.cc
int audit_main(const std::vector<std::string>& args); // audit_cmd.cc
std::string age(int64_t created_unix);                // "5m ago"
int os_main(const std::vector<std::string>& args);    // service_cmd.cc (talks to keeld too)
Result<nlohmann::json> system_request(const nlohmann::json& req);

} // namespace keel::cli
