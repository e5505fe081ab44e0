// The kernel hardening profile (config/sysctl.yml): sysctl keys and values in file order. PID 1
// writes them under /proc/sys (pid1/sysctl.h); keel audit compares them with what is there.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "common/error.h"

namespace keel::config::sysctl {

using Profile = std::vector<std::pair<std::string, std::string>>; // in file order

Result<Profile> parse_profile(const std::string& yaml_text, const std::string& origin);

// "kernel.kptr_restrict" -> "<proc_sys>/kernel/kptr_restrict" (dots are separators; a slash
// form is accepted as is).
std::string key_path(const std::string& key, const std::string& proc_sys = "/proc/sys");

} // namespace keel::config::sysctl
