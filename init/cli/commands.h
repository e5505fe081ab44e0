// The CLI's command groups, one file each.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/error.h"

namespace keel::cli {

int service_main(const std::vector<std::string>& args); // service_cmd.cc
int config_main(const std::vector<std::string>& args); // config_cmd.cc
int os_main(const std::vector<std::string>& args);      // service_cmd.cc (talks to keeld too)
Result<nlohmann::json> system_request(const nlohmann::json& req);

} // namespace keel::cli
