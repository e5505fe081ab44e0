#include "pid1/sysctl.h"

#include <algorithm>
#include <filesystem>
#include <optional>

#include <fmt/format.h>

#include "common/fd.h"

namespace keel::pid1::sysctl {

using config::sysctl::key_path;

// "net.ipv6.conf.default.accept_ra" -> {"net.ipv6.conf.", "accept_ra"}; nullopt for a key that
// is not an interface default.
static std::optional<std::pair<std::string, std::string>>
interface_default(const std::string& key) {
    for (const char* family : {"net.ipv4.conf.", "net.ipv6.conf."}) {
        std::string prefix = std::string(family) + "default.";
        if (key.rfind(prefix, 0) == 0 && key.size() > prefix.size())
            return std::pair{std::string(family), key.substr(prefix.size())};
    }
    return std::nullopt;
}

// The interfaces under <proc_sys>/net/ipvN/conf/ other than "all" and "default".
static std::vector<std::string> interfaces(const std::string& conf_dir) {
    std::vector<std::string> out;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(conf_dir, ec)) {
        std::string name = e.path().filename();
        if (name != "all" && name != "default") out.push_back(name);
    }
    std::sort(out.begin(), out.end());
    return out;
}

static void write_one(Outcome& out, const std::string& key, const std::string& path,
                      const std::string& value) {
    ++out.attempted;
    if (write_file(path.c_str(), value))
        ++out.applied;
    else
        out.failures.push_back(sys_error(fmt::format("{}={}", key, value)).str());
}

Outcome apply(const config::sysctl::Profile& p, const std::string& proc_sys) {
    Outcome out;
    for (const auto& [key, value] : p) {
        write_one(out, key, key_path(key, proc_sys), value);
        // A "default" reaches only interfaces made after it is written, and the modules stage
        // has made the NICs already: they get the value too, as if they had come later.
        // (Their names may hold dots, so the path is built with slashes.)
        auto d = interface_default(key);
        if (!d) continue;
        std::string conf = key_path(d->first.substr(0, d->first.size() - 1), proc_sys);
        for (const auto& ifname : interfaces(conf))
            write_one(out, d->first + ifname + "." + d->second,
                      conf + "/" + ifname + "/" + d->second, value);
    }
    return out;
}

} // namespace keel::pid1::sysctl
