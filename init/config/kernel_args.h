// The kernel command line (/proc/cmdline), as PID 1 and keeld read it: `keel.*` keys; everything
// else (the kernel's own parameters, words and X=Y environment the kernel hands to init) is
// tolerated, never fatal. (config/cmdline.yml, the image's command line, is kernel_cmdline.h.)
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace keel::config {

struct KernelArgs {
    std::optional<std::string> state_label;    // keel.state=LABEL (default KEEL_STATE)
    bool debug = false;                        // keel.debug
    bool recovery = false;                     // keel.recovery: a root shell instead of keeld
    bool autologin = false;                    // keel.autologin: console logs in without a password
    std::map<std::string, std::string> config; // keel.config.KEY=VALUE overrides
    std::vector<std::string> unknown_keel;     // keel.* keys we do not know, for a warning
};

// Splits like the kernel does: spaces separate words, double quotes group.
std::vector<std::string> split_kernel_args(const std::string& text);
KernelArgs parse_kernel_args(const std::string& text);

} // namespace keel::config
