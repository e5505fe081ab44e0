// config/cmdline.yml (/etc/keel/cmdline.yml): the image's kernel command line in one place.
// scripts/build-image writes `boot` then `hardening` into the image's cmdline; keel audit
// checks the running kernel's command line against `hardening` and `weakening`.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "common/error.h"

namespace keel::config {

struct KernelCmdline {
    std::vector<std::pair<std::string, std::string>> boot;      // word, why
    std::vector<std::pair<std::string, std::string>> hardening; // word, why
    // A key alone ("nokaslr") matches any value of it; key=value matches that value.
    std::vector<std::string> weakening;
};

// Errors name the file, the line and the key.
Result<KernelCmdline> parse_kernel_cmdline(const std::string& yaml_text, const std::string& origin);

} // namespace keel::config
