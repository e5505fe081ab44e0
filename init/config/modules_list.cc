#include "config/modules_list.h"

#include <algorithm>
#include <functional>
#include <set>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include "common/strings.h"

namespace keel::config::modules {

static std::string normalize(std::string n) {
    std::replace(n.begin(), n.end(), '-', '_');
    return n;
}

std::string module_name(const std::string& path) {
    auto slash = path.rfind('/');
    std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
    auto dot = base.find(".ko");
    return normalize(base.substr(0, dot));
}

Result<AllowList> parse_allow_list(const std::string& yaml_text, const std::string& origin) {
    try {
        YAML::Node root = YAML::Load(yaml_text);
        AllowList out;
        if (!root || root.IsNull()) return out;
        if (!root.IsMap()) return plain_error(origin + ": expected a mapping with 'modules'");
        for (const auto& kv : root) {
            std::string key = kv.first.as<std::string>();
            if (key != "modules" && key != "lock")
                return plain_error(
                    fmt::format("{}:{}: unknown key '{}'", origin, kv.first.Mark().line + 1, key));
        }
        if (root["lock"]) out.lock = root["lock"].as<bool>();
        const YAML::Node list = root["modules"];
        if (!list) return out;
        if (!list.IsSequence())
            return plain_error(
                fmt::format("{}:{}: modules: expected a list", origin, list.Mark().line + 1));
        for (const auto& item : list) {
            Request r;
            if (item.IsScalar()) {
                r.name = item.as<std::string>();
            } else if (item.IsMap()) {
                for (const auto& kv : item) {
                    std::string key = kv.first.as<std::string>();
                    if (key == "name")
                        r.name = kv.second.as<std::string>();
                    else if (key == "params")
                        r.params = kv.second.IsNull() ? "" : kv.second.as<std::string>();
                    else
                        return plain_error(fmt::format("{}:{}: modules: unknown key '{}'", origin,
                                                       kv.first.Mark().line + 1, key));
                }
            }
            if (r.name.empty())
                return plain_error(fmt::format("{}:{}: modules: entry without a name", origin,
                                               item.Mark().line + 1));
            r.name = normalize(r.name);
            out.modules.push_back(r);
        }
        return out;
    } catch (const YAML::Exception& e) {
        return plain_error(fmt::format("{}:{}: {}", origin, e.mark.line + 1, e.msg));
    }
}

DepTable parse_modules_dep(const std::string& text) {
    DepTable t;
    for (const auto& line : split(text, '\n')) {
        auto colon = line.find(':');
        if (colon == std::string::npos) continue;
        std::string path = line.substr(0, colon);
        std::string name = module_name(path);
        t.path[name] = path;
        auto& deps = t.deps[name];
        for (const auto& d : split(trim(line.substr(colon + 1)), ' '))
            if (!d.empty()) deps.push_back(module_name(d));
    }
    return t;
}

std::vector<std::string> load_order(const DepTable& t, const std::vector<std::string>& wanted,
                                    const std::vector<std::string>& builtin,
                                    std::vector<std::string>& missing) {
    std::vector<std::string> order;
    // depmod refuses cycles, but a hand-edited modules.dep must not make PID 1 load a module
    // twice: a name being visited is skipped, which breaks the cycle at that edge.
    std::set<std::string> visiting;
    std::function<void(const std::string&, int)> visit = [&](const std::string& n, int depth) {
        if (depth > 64 || visiting.count(n)) return;
        if (std::find(order.begin(), order.end(), n) != order.end()) return;
        auto it = t.path.find(n);
        if (it == t.path.end()) {
            if (std::find(builtin.begin(), builtin.end(), n) == builtin.end() &&
                std::find(missing.begin(), missing.end(), n) == missing.end())
                missing.push_back(n);
            return;
        }
        visiting.insert(n);
        auto d = t.deps.find(n);
        if (d != t.deps.end())
            for (auto r = d->second.rbegin(); r != d->second.rend(); ++r)
                visit(*r, depth + 1);
        visiting.erase(n);
        order.push_back(n);
    };
    for (const auto& w : wanted)
        visit(normalize(w), 0);
    return order;
}

} // namespace keel::config::modules
