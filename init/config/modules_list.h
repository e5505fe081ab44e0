// Kernel modules: the allow-list (config/modules.yml) and the kernel's modules.dep, and the
// order they give: dependencies first. PID 1 loads them in that order (pid1/boot.cc), then
// locks module loading for good; keel audit computes the same set to compare.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "common/error.h"

namespace keel::config::modules {

struct Request {
    std::string name;
    std::string params;
};

struct AllowList {
    std::vector<Request> modules;
    bool lock = true; // kernel.modules_disabled=1 and kernel.kexec_load_disabled=1 afterwards
};

Result<AllowList> parse_allow_list(const std::string& yaml_text, const std::string& origin);

// modules.dep: "kernel/x/a.ko: kernel/y/b.ko kernel/z/c.ko" — a module's full dependency list,
// in the order that modprobe unloads them (so load them from the right).
struct DepTable {
    std::map<std::string, std::string> path;              // name -> relative path
    std::map<std::string, std::vector<std::string>> deps; // name -> dependency names
};
DepTable parse_modules_dep(const std::string& text);
std::string module_name(const std::string& path); // "kernel/x/virtio-net.ko.xz" -> "virtio_net"

// Names in load order, each once, dependencies before dependants. Names that are neither in
// the table nor in `builtin` go to `missing`.
std::vector<std::string> load_order(const DepTable& t, const std::vector<std::string>& wanted,
                                    const std::vector<std::string>& builtin,
                                    std::vector<std::string>& missing);

} // namespace keel::config::modules
