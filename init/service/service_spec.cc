// Service files: YAML → ServiceSpec (validated, errors with file:line:column and key) →
// ContainerSpec (container.cc). Parsing throws inside this file only; the public functions
// return errors.
#include "service/service_spec.h"

#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <optional>
#include <set>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include "common/fd.h"
#include "common/signals.h"
#include "common/sizes.h"
#include "common/strings.h"
#include "runtime/capabilities.h"
#include "runtime/oci.h"

namespace keel::service {

namespace {

struct ParseError {
    std::string message;
};

struct Reader {
    std::string file;
    [[noreturn]] void fail(const YAML::Node& at, const std::string& key,
                           const std::string& what) const {
        auto m = at.Mark();
        throw ParseError{
            fmt::format("{}:{}:{}: {}: {}", file, m.line + 1, m.column + 1, key, what)};
    }
    std::string str(const YAML::Node& n, const std::string& key) const {
        if (!n.IsScalar()) fail(n, key, "expected a string");
        return n.as<std::string>();
    }
    bool boolean(const YAML::Node& n, const std::string& key) const {
        try {
            return n.as<bool>();
        } catch (const YAML::Exception&) {
            fail(n, key, "expected true or false");
        }
    }
    int64_t integer(const YAML::Node& n, const std::string& key) const {
        try {
            return n.as<int64_t>();
        } catch (const YAML::Exception&) {
            fail(n, key, "expected a number");
        }
    }
    std::vector<std::string> list(const YAML::Node& n, const std::string& key) const {
        if (n.IsScalar()) return {n.as<std::string>()};
        if (!n.IsSequence()) fail(n, key, "expected a list of strings");
        std::vector<std::string> out;
        for (const auto& i : n)
            out.push_back(str(i, key));
        return out;
    }
};

const std::vector<std::string> kKeys = {
    "image",          "command",        "environment",    "user",          "group",
    "working_dir",    "capabilities",   "host",           "mounts",        "devices",
    "read_only_root", "resources",      "restart",        "restart_limit", "after",
    "requires",       "ready",          "stop_signal",    "stop_timeout",  "enabled",
    "privileged",     "user_namespace", "delegate_cgroup"};

int64_t parse_size(const Reader& r, const YAML::Node& n, const std::string& key) {
    auto v = keel::parse_size(r.str(n, key));
    if (!v) r.fail(n, key, v.error().message);
    return *v;
}

int parse_signal(const Reader& r, const YAML::Node& n, const std::string& key) {
    std::string text = r.str(n, key);
    if (int sig = keel::signal_number(text); sig > 0) return sig;
    if (!text.empty() && text.find_first_not_of("0123456789") == std::string::npos)
        r.fail(n, key, "signal " + text + " is not between 1 and " + std::to_string(NSIG - 1));
    r.fail(n, key, "unknown signal '" + text + "'");
}

// Every key is a known one (a typo is an error, with the nearest known key).
void check_keys(const YAML::Node& root, const Reader& r) {
    for (const auto& kv : root) {
        std::string key = kv.first.as<std::string>();
        if (std::find(kKeys.begin(), kKeys.end(), key) == kKeys.end()) {
            std::string near = closest(key, kKeys);
            r.fail(kv.first, key,
                   "unknown key" +
                       (near.empty() ? std::string() : " (did you mean '" + near + "'?)"));
        }
    }
}

// image, command, environment, user, group, working_dir.
void parse_process(const YAML::Node& root, const Reader& r, ServiceSpec& s) {
    if (!root["image"])
        r.fail(root, "image", "missing (a directory under the images dir, or an absolute path)");
    s.image = r.str(root["image"], "image");
    if (!root["command"]) r.fail(root, "command", "missing");
    const YAML::Node cmd = root["command"];
    if (cmd.IsScalar()) {
        for (const auto& w : split(cmd.as<std::string>(), ' '))
            if (!w.empty()) s.command.push_back(w);
    } else {
        s.command = r.list(cmd, "command");
    }
    if (s.command.empty()) r.fail(cmd, "command", "is empty");
    if (const YAML::Node env = root["environment"]) {
        if (env.IsMap())
            for (const auto& kv : env)
                s.environment.push_back(kv.first.as<std::string>() + "=" +
                                        r.str(kv.second, "environment"));
        else
            for (const auto& e : r.list(env, "environment")) {
                if (e.find('=') == std::string::npos)
                    r.fail(env, "environment", "'" + e + "' is not KEY=VALUE");
                s.environment.push_back(e);
            }
    }
    if (root["user"]) s.user = r.str(root["user"], "user");
    if (root["group"]) s.group = r.str(root["group"], "group");
    if (root["working_dir"]) s.working_dir = r.str(root["working_dir"], "working_dir");
}

void parse_capabilities(const YAML::Node& root, const Reader& r, ServiceSpec& s) {
    const YAML::Node caps = root["capabilities"];
    if (!caps) return;
    if (!caps.IsSequence()) r.fail(caps, "capabilities", "expected a list of capability names");
    std::vector<std::string> known;
    for (int c = 0; c <= runtime::caps::last_cap(); ++c)
        if (auto n = runtime::oci::capability_name(c); !n.empty()) known.push_back(n);
    for (size_t i = 0; i < caps.size(); ++i) {
        std::string c = r.str(caps[i], "capabilities");
        std::transform(c.begin(), c.end(), c.begin(), ::toupper);
        if (!starts_with(c, "CAP_")) c = "CAP_" + c;
        int v = runtime::oci::capability_from_name(c);
        std::string key = fmt::format("capabilities[{}]", i);
        if (v < 0) {
            std::string near = closest(c, known);
            r.fail(caps[i], key,
                   "unknown capability " + c +
                       (near.empty() ? "" : " (did you mean " + near + "?)"));
        }
        s.capabilities.push_back(v);
    }
}

// host: the host namespaces the service shares, as a list or a mapping of booleans.
void parse_host(const YAML::Node& root, const Reader& r, ServiceSpec& s) {
    const YAML::Node host = root["host"];
    if (!host) return;
    std::vector<std::string> names;
    if (host.IsMap()) {
        for (const auto& kv : host)
            if (r.boolean(kv.second, "host." + kv.first.as<std::string>()))
                names.push_back(kv.first.as<std::string>());
    } else {
        names = r.list(host, "host");
    }
    for (const auto& n : names) {
        if (n == "net")
            s.host.net = true;
        else if (n == "pid")
            s.host.pid = true;
        else if (n == "ipc")
            s.host.ipc = true;
        else if (n == "uts")
            s.host.uts = true;
        else
            r.fail(host, "host", "unknown namespace '" + n + "' (net, pid, ipc or uts)");
    }
}

// One entry of `mounts`: SOURCE:DESTINATION[:rw|ro], or a mapping.
ServiceMount parse_mount(const YAML::Node& m, const Reader& r, const std::string& key) {
    ServiceMount sm;
    if (m.IsScalar()) {
        auto parts = split(m.as<std::string>(), ':');
        if (parts.size() < 2 || parts.size() > 3)
            r.fail(m, key, "expected SOURCE:DESTINATION[:rw]");
        sm.source = parts[0];
        sm.destination = parts[1];
        if (parts.size() == 3) {
            if (parts[2] != "rw" && parts[2] != "ro") r.fail(m, key, "mode must be rw or ro");
            sm.read_only = parts[2] == "ro";
        }
    } else if (m.IsMap()) {
        for (const auto& kv : m) {
            std::string k = kv.first.as<std::string>();
            if (k == "type")
                sm.type = r.str(kv.second, key + ".type");
            else if (k == "source")
                sm.source = r.str(kv.second, key + ".source");
            else if (k == "destination")
                sm.destination = r.str(kv.second, key + ".destination");
            else if (k == "read_only")
                sm.read_only = r.boolean(kv.second, key + ".read_only");
            else if (k == "options")
                sm.options = r.str(kv.second, key + ".options");
            else
                r.fail(kv.first, key + "." + k, "unknown key");
        }
    } else {
        r.fail(m, key, "expected a mapping or SOURCE:DESTINATION");
    }
    if (sm.type != "bind" && sm.type != "tmpfs") r.fail(m, key + ".type", "must be bind or tmpfs");
    if (sm.destination.empty() || sm.destination[0] != '/')
        r.fail(m, key + ".destination", "must be an absolute path, got '" + sm.destination + "'");
    if (sm.type == "bind" && sm.source.empty()) r.fail(m, key + ".source", "missing");
    return sm;
}

// mounts, devices, read_only_root.
void parse_filesystem(const YAML::Node& root, const Reader& r, ServiceSpec& s) {
    if (const YAML::Node mounts = root["mounts"]) {
        if (!mounts.IsSequence()) r.fail(mounts, "mounts", "expected a list");
        for (size_t i = 0; i < mounts.size(); ++i)
            s.mounts.push_back(parse_mount(mounts[i], r, fmt::format("mounts[{}]", i)));
    }
    if (root["devices"]) s.devices = r.list(root["devices"], "devices");
    if (root["read_only_root"])
        s.read_only_root = r.boolean(root["read_only_root"], "read_only_root");
}

// resources.cpu: a number of CPUs, as a quota over a 100 ms period.
void parse_cpu(const YAML::Node& n, const Reader& r, ServiceSpec& s) {
    double cores = 0;
    try {
        cores = n.as<double>();
    } catch (const YAML::Exception&) {
        r.fail(n, "resources.cpu", "expected a number of CPUs, like 0.5");
    }
    // Negated so that NaN fails too; the bound keeps the quota (cores * 100000 us) an
    // int64 rather than an undefined conversion.
    if (!(cores > 0 && cores <= 1e6))
        r.fail(n, "resources.cpu", "must be above 0 and at most 1000000");
    s.resources.cpu_period = 100000;
    s.resources.cpu_quota = static_cast<int64_t>(cores * 100000);
}

void parse_resources(const YAML::Node& root, const Reader& r, ServiceSpec& s) {
    const YAML::Node res = root["resources"];
    if (!res) return;
    if (!res.IsMap()) r.fail(res, "resources", "expected a mapping");
    for (const auto& kv : res) {
        std::string k = kv.first.as<std::string>();
        if (k == "memory")
            s.resources.memory_max = parse_size(r, kv.second, "resources.memory");
        else if (k == "memory_high")
            s.resources.memory_high = parse_size(r, kv.second, "resources.memory_high");
        else if (k == "pids")
            s.resources.pids_max = r.integer(kv.second, "resources.pids");
        else if (k == "cpu")
            parse_cpu(kv.second, r, s);
        else if (k == "cpu_weight")
            s.resources.cpu_weight =
                static_cast<uint64_t>(r.integer(kv.second, "resources.cpu_weight"));
        else
            r.fail(kv.first, "resources." + k,
                   "unknown key (memory, memory_high, pids, cpu, cpu_weight)");
    }
    if (s.resources.memory_high && s.resources.memory_max &&
        *s.resources.memory_high > *s.resources.memory_max)
        r.fail(res["memory_high"], "resources.memory_high",
               "is above resources.memory (memory.max)");
}

// restart, restart_limit, after, requires, ready, stop_signal, stop_timeout, enabled.
void parse_lifecycle(const YAML::Node& root, const Reader& r, ServiceSpec& s) {
    if (root["restart"]) {
        std::string p = r.str(root["restart"], "restart");
        if (p == "no")
            s.restart = RestartPolicy::no;
        else if (p == "on-failure")
            s.restart = RestartPolicy::on_failure;
        else if (p == "always")
            s.restart = RestartPolicy::always;
        else
            r.fail(root["restart"], "restart", "must be no, on-failure or always");
    }
    if (root["restart_limit"])
        s.restart_limit = static_cast<int>(r.integer(root["restart_limit"], "restart_limit"));
    if (root["after"]) s.after = r.list(root["after"], "after");
    if (root["requires"]) s.required = r.list(root["requires"], "requires");
    if (const YAML::Node ready = root["ready"]) {
        if (ready.IsScalar() && ready.as<std::string>() == "started")
            s.ready = ReadyKind::started;
        else if (ready.IsScalar() && ready.as<std::string>() == "notify")
            s.ready = ReadyKind::notify;
        else if (ready.IsMap() && ready["path"]) {
            s.ready = ReadyKind::path;
            s.ready_path = r.str(ready["path"], "ready.path");
        } else
            r.fail(ready, "ready", "must be started, notify or {path: P}");
    }
    if (root["stop_signal"]) s.stop_signal = parse_signal(r, root["stop_signal"], "stop_signal");
    if (root["stop_timeout"])
        s.stop_timeout_s = static_cast<int>(r.integer(root["stop_timeout"], "stop_timeout"));
    if (root["enabled"]) s.enabled = r.boolean(root["enabled"], "enabled");
}

// privileged, user_namespace, delegate_cgroup.
void parse_privileges(const YAML::Node& root, const Reader& r, ServiceSpec& s) {
    if (root["privileged"]) s.privileged = r.boolean(root["privileged"], "privileged");
    if (const YAML::Node u = root["user_namespace"]) {
        if (u.IsMap()) {
            for (const auto& kv : u) {
                std::string k = kv.first.as<std::string>();
                int64_t v = r.integer(kv.second, "user_namespace." + k);
                if (v <= 0 || v > 0xffffffffLL)
                    r.fail(kv.second, "user_namespace." + k, "must be a positive id");
                if (k == "host_id")
                    s.user_namespace.host_id = uint32_t(v);
                else if (k == "size")
                    s.user_namespace.size = uint32_t(v);
                else
                    r.fail(kv.first, "user_namespace." + k, "unknown key (host_id, size)");
            }
            if (!s.user_namespace.host_id || !s.user_namespace.size)
                r.fail(u, "user_namespace", "needs both host_id and size");
            s.user_namespace.enabled = true;
        } else {
            s.user_namespace.enabled = r.boolean(u, "user_namespace");
        }
    }
    if (root["delegate_cgroup"])
        s.delegate_cgroup = r.boolean(root["delegate_cgroup"], "delegate_cgroup");
}

// Section by section, in the order the checks always ran: the first error reported stays the same.
ServiceSpec parse(const YAML::Node& root, const Reader& r, const std::string& name) {
    if (!root.IsMap()) r.fail(root, name, "a service file is a mapping of keys");
    ServiceSpec s;
    s.name = name;
    s.file = r.file;
    check_keys(root, r);
    parse_process(root, r, s);
    parse_capabilities(root, r, s);
    parse_host(root, r, s);
    parse_filesystem(root, r, s);
    parse_resources(root, r, s);
    parse_lifecycle(root, r, s);
    parse_privileges(root, r, s);
    return s;
}

} // namespace

Result<ServiceSpec> parse_service(const std::string& yaml_text, const std::string& file) {
    std::string base = file.substr(file.rfind('/') + 1);
    std::string name = base.substr(0, base.rfind(".yml"));
    try {
        return parse(YAML::Load(yaml_text), Reader{file}, name);
    } catch (const ParseError& e) {
        return plain_error(e.message);
    } catch (const YAML::Exception& e) {
        return plain_error(
            fmt::format("{}:{}:{}: {}", file, e.mark.line + 1, e.mark.column + 1, e.msg));
    }
}

Catalog load_catalog(const std::string& dir) {
    return load_catalog(std::vector<std::string>{dir});
}

namespace {

// Every *.yml path, in dirs' order, sorted by name within each.
std::vector<std::string> service_files(const std::vector<std::string>& dirs) {
    std::vector<std::string> paths;
    for (const auto& dir : dirs) {
        std::vector<std::string> files;
        if (DIR* d = ::opendir(dir.c_str())) {
            while (dirent* e = ::readdir(d)) {
                std::string n = e->d_name;
                if (n.size() > 4 && n.ends_with(".yml")) files.push_back(n);
            }
            ::closedir(d);
        }
        std::sort(files.begin(), files.end());
        for (const auto& f : files)
            paths.push_back(dir + "/" + f);
    }
    return paths;
}

} // namespace

Catalog load_catalog(const std::vector<std::string>& dirs) {
    Catalog c;
    std::set<std::string> seen;
    std::map<std::string, ServiceSpec> ok;
    for (const auto& path : service_files(dirs)) {
        std::string f = path.substr(path.rfind('/') + 1), text, name = f.substr(0, f.size() - 4);
        if (!seen.insert(name).second) {
            // A later directory (the state partition's) adds services; it does not replace the
            // image's: a system service is changed by changing the image.
            c.errors[name + " (" + path + ")"] =
                path + ": a service named " + name + " already exists; rename this file";
            continue;
        }
        if (!read_file(path.c_str(), text)) {
            c.errors[name] = sys_error("read " + path).str();
            continue;
        }
        auto s = parse_service(text, path);
        if (!s)
            c.errors[name] = s.error().str();
        else
            ok.emplace(name, std::move(*s));
    }
    // Requirements must exist and be valid.
    bool changed = true;
    while (changed) {
        changed = false;
        for (auto it = ok.begin(); it != ok.end();) {
            std::string why;
            for (const auto& dep : it->second.required)
                if (!ok.count(dep))
                    why = c.errors.count(dep) ? "requires " + dep + ", which is invalid"
                                              : "requires unknown service " + dep;
            if (!why.empty()) {
                c.errors[it->first] = it->second.file + ": " + why;
                it = ok.erase(it);
                changed = true;
            } else {
                ++it;
            }
        }
    }
    // Cycles through after + requires.
    std::map<std::string, int> mark; // 0 new, 1 on stack, 2 done
    std::vector<std::string> stack;
    std::set<std::string> in_cycle;
    std::function<void(const std::string&)> visit = [&](const std::string& n) {
        mark[n] = 1;
        stack.push_back(n);
        auto& s = ok.at(n);
        std::vector<std::string> deps = s.after;
        deps.insert(deps.end(), s.required.begin(), s.required.end());
        for (const auto& d : deps) {
            if (!ok.count(d)) continue;
            if (mark[d] == 1) {
                auto from = std::find(stack.begin(), stack.end(), d);
                std::vector<std::string> cyc(from, stack.end());
                cyc.push_back(d);
                std::string text = "dependency cycle: " + join(cyc, " -> ");
                for (auto i = from; i != stack.end(); ++i)
                    if (in_cycle.insert(*i).second) c.errors[*i] = ok.at(*i).file + ": " + text;
            } else if (mark[d] == 0) {
                visit(d);
            }
        }
        stack.pop_back();
        mark[n] = 2;
    };
    for (auto& [n, s] : ok)
        if (mark[n] == 0) visit(n);
    for (const auto& n : in_cycle)
        ok.erase(n);
    for (auto& [n, s] : ok)
        c.services.push_back(std::move(s));
    return c;
}

std::vector<std::string> start_order(const Catalog& c) {
    std::map<std::string, const ServiceSpec*> by;
    for (const auto& s : c.services)
        by[s.name] = &s;
    std::vector<std::string> order;
    std::set<std::string> done;
    std::function<void(const std::string&, int)> visit = [&](const std::string& n, int depth) {
        if (done.count(n) || !by.count(n) || depth > 256) return;
        std::vector<std::string> deps = by[n]->after;
        deps.insert(deps.end(), by[n]->required.begin(), by[n]->required.end());
        std::sort(deps.begin(), deps.end());
        for (const auto& d : deps)
            visit(d, depth + 1);
        if (done.insert(n).second) order.push_back(n);
    };
    for (const auto& [n, s] : by)
        visit(n, 0);
    return order;
}

} // namespace keel::service
