#include "config/sysctl_profile.h"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

namespace keel::config::sysctl {

Result<Profile> parse_profile(const std::string& yaml_text, const std::string& origin) {
    try {
        YAML::Node root = YAML::Load(yaml_text);
        Profile p;
        if (!root || root.IsNull()) return p;
        if (!root.IsMap() || root.size() != 1 || !root["sysctl"])
            return plain_error(
                fmt::format("{}:{}: expected one key, 'sysctl'", origin, root.Mark().line + 1));
        const YAML::Node map = root["sysctl"];
        if (!map.IsMap())
            return plain_error(
                fmt::format("{}:{}: sysctl: expected a mapping", origin, map.Mark().line + 1));
        for (const auto& kv : map) {
            if (!kv.second.IsScalar())
                return plain_error(fmt::format("{}:{}: sysctl.{}: expected a value", origin,
                                               kv.second.Mark().line + 1,
                                               kv.first.as<std::string>()));
            p.emplace_back(kv.first.as<std::string>(), kv.second.as<std::string>());
        }
        return p;
    } catch (const YAML::Exception& e) {
        return plain_error(fmt::format("{}:{}: {}", origin, e.mark.line + 1, e.msg));
    }
}

std::string key_path(const std::string& key, const std::string& proc_sys) {
    std::string rel = key;
    if (rel.find('/') == std::string::npos)
        for (auto& c : rel)
            if (c == '.') c = '/';
    return proc_sys + "/" + rel;
}

} // namespace keel::config::sysctl
