#include "runtime/seccomp.h"

#include <linux/seccomp.h>
#include <seccomp.h>
#include <sys/capability.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <set>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include "common/fd.h"
#include "common/strings.h"

namespace keel::runtime::seccomp {

namespace {

// Thrown only inside parse_profile, caught at its boundary.
struct ParseError {
    std::string message;
};

std::string where(const std::string& origin, const YAML::Node& n, const std::string& path) {
    if (n.Mark().line >= 0) return fmt::format("{}:{}: {}", origin, n.Mark().line + 1, path);
    return fmt::format("{}: {}", origin, path);
}

void check_keys(const std::string& origin, const YAML::Node& map, const std::string& path,
                const std::vector<std::string>& allowed) {
    if (!map.IsMap()) throw ParseError{where(origin, map, path) + ": expected a mapping"};
    for (const auto& kv : map) {
        std::string key = kv.first.as<std::string>();
        if (std::find(allowed.begin(), allowed.end(), key) != allowed.end()) continue;
        std::string near = closest(key, allowed);
        throw ParseError{where(origin, kv.first, path.empty() ? key : path + "." + key) +
                         ": unknown key '" + key + "'" +
                         (near.empty() ? "" : " (did you mean '" + near + "'?)")};
    }
}

std::vector<std::string> string_list(const std::string& origin, const YAML::Node& n, const std::string& path) {
    std::vector<std::string> out;
    if (n.IsScalar()) return {n.as<std::string>()};
    if (!n.IsSequence()) throw ParseError{where(origin, n, path) + ": expected a list of strings"};
    for (const auto& item : n) {
        if (!item.IsScalar()) throw ParseError{where(origin, item, path) + ": expected a string"};
        out.push_back(item.as<std::string>());
    }
    return out;
}

int errno_value(const std::string& origin, const YAML::Node& n, const std::string& path) {
    std::string s = n.as<std::string>();
    if (!s.empty() && std::all_of(s.begin(), s.end(), ::isdigit)) return std::stoi(s);
    for (int e = 1; e < 4096; ++e)
        if (const char* name = strerrorname_np(e); name && s == name) return e;
    throw ParseError{where(origin, n, path) + ": unknown errno '" + s + "'"};
}

int cap_number(const std::string& origin, const YAML::Node& n, const std::string& path, const std::string& name) {
    cap_value_t v;
    std::string lower = name;
    for (auto& c : lower) c = static_cast<char>(::tolower(static_cast<unsigned char>(c)));
    if (cap_from_name(lower.c_str(), &v) < 0) throw ParseError{where(origin, n, path) + ": unknown capability '" + name + "'"};
    return v;
}

const std::vector<std::string> kActions = {"SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO",       "SCMP_ACT_KILL",
                                           "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP",
                                           "SCMP_ACT_LOG",   "SCMP_ACT_TRACE"};
const std::vector<std::string> kOps = {"SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE",       "SCMP_CMP_EQ",
                                       "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ"};

std::string checked(const std::string& origin, const YAML::Node& n, const std::string& path,
                    const std::vector<std::string>& known, const char* what) {
    std::string s = n.as<std::string>();
    if (std::find(known.begin(), known.end(), s) == known.end()) {
        std::string near = closest(s, known);
        throw ParseError{where(origin, n, path) + ": unknown " + what + " '" + s + "'" +
                         (near.empty() ? "" : " (did you mean '" + near + "'?)")};
    }
    return s;
}

SeccompProfile parse(const YAML::Node& root, const std::string& origin, const std::vector<int>& granted) {
    check_keys(origin, root, "", {"default_action", "default_errno", "architectures", "flags", "syscalls"});
    SeccompProfile p;
    if (root["default_action"]) p.default_action = checked(origin, root["default_action"], "default_action", kActions, "action");
    if (root["default_errno"]) p.default_errno = errno_value(origin, root["default_errno"], "default_errno");
    if (root["architectures"]) p.architectures = string_list(origin, root["architectures"], "architectures");
    if (root["flags"]) p.flags = string_list(origin, root["flags"], "flags");
    const YAML::Node rules = root["syscalls"];
    if (!rules) return p;
    if (!rules.IsSequence()) throw ParseError{where(origin, rules, "syscalls") + ": expected a list"};
    const bool native_x86_64 = seccomp_arch_native() == SCMP_ARCH_X86_64;
    for (size_t i = 0; i < rules.size(); ++i) {
        const YAML::Node r = rules[i];
        std::string path = fmt::format("syscalls[{}]", i);
        check_keys(origin, r, path, {"names", "action", "errno", "args", "caps_any", "caps_none", "arches", "comment"});
        if (!r["names"]) throw ParseError{where(origin, r, path) + ": missing 'names'"};
        if (!r["action"]) throw ParseError{where(origin, r, path) + ": missing 'action'"};
        SeccompRule rule;
        rule.names = string_list(origin, r["names"], path + ".names");
        rule.action = checked(origin, r["action"], path + ".action", kActions, "action");
        if (r["errno"]) rule.errno_ret = errno_value(origin, r["errno"], path + ".errno");
        if (const YAML::Node args = r["args"]) {
            if (!args.IsSequence()) throw ParseError{where(origin, args, path + ".args") + ": expected a list"};
            for (size_t j = 0; j < args.size(); ++j) {
                std::string apath = fmt::format("{}.args[{}]", path, j);
                check_keys(origin, args[j], apath, {"index", "value", "value_two", "op"});
                SeccompArg a;
                a.index = args[j]["index"].as<unsigned>();
                a.value = args[j]["value"] ? args[j]["value"].as<uint64_t>() : 0;
                a.value_two = args[j]["value_two"] ? args[j]["value_two"].as<uint64_t>() : 0;
                if (!args[j]["op"]) throw ParseError{where(origin, args[j], apath) + ": missing 'op'"};
                a.op = checked(origin, args[j]["op"], apath + ".op", kOps, "operator");
                rule.args.push_back(a);
            }
        }
        // Conditions are resolved now, against what the container will hold: the returned
        // profile is final.
        auto holds = [&](const char* key) {
            bool any = false;
            for (const auto& name : string_list(origin, r[key], path + "." + key))
                if (std::count(granted.begin(), granted.end(), cap_number(origin, r[key], path + "." + key, name)))
                    any = true;
            return any;
        };
        if (r["caps_any"] && !holds("caps_any")) continue;
        if (r["caps_none"] && holds("caps_none")) continue;
        if (r["arches"]) {
            auto arches = string_list(origin, r["arches"], path + ".arches");
            bool match = false;
            for (const auto& a : arches) {
                if (a != "SCMP_ARCH_X86_64" && a != "SCMP_ARCH_X86" && a != "SCMP_ARCH_X32" &&
                    a != "SCMP_ARCH_AARCH64" && a != "SCMP_ARCH_ARM")
                    throw ParseError{where(origin, r["arches"], path + ".arches") + ": unknown architecture '" + a + "'"};
                if (a == "SCMP_ARCH_X86_64" && native_x86_64) match = true;
                if (a == "SCMP_ARCH_AARCH64" && seccomp_arch_native() == SCMP_ARCH_AARCH64) match = true;
            }
            if (!match) continue;
        }
        p.syscalls.push_back(std::move(rule));
    }
    return p;
}

struct Ctx {
    scmp_filter_ctx ctx;
    explicit Ctx(uint32_t def) : ctx(seccomp_init(def)) {}
    ~Ctx() {
        if (ctx) seccomp_release(ctx);
    }
};

Result<uint32_t> action_value(const std::string& action, std::optional<int> ret) {
    if (action == "SCMP_ACT_ALLOW") return SCMP_ACT_ALLOW;
    if (action == "SCMP_ACT_ERRNO") return SCMP_ACT_ERRNO(static_cast<uint32_t>(ret.value_or(EPERM)));
    if (action == "SCMP_ACT_KILL" || action == "SCMP_ACT_KILL_THREAD") return SCMP_ACT_KILL_THREAD;
    if (action == "SCMP_ACT_KILL_PROCESS") return SCMP_ACT_KILL_PROCESS;
    if (action == "SCMP_ACT_TRAP") return SCMP_ACT_TRAP;
    if (action == "SCMP_ACT_LOG") return SCMP_ACT_LOG;
    if (action == "SCMP_ACT_TRACE") return SCMP_ACT_TRACE(static_cast<uint32_t>(ret.value_or(0)));
    return plain_error("seccomp: unknown action " + action);
}

Result<scmp_compare> op_value(const std::string& op) {
    static const std::pair<const char*, scmp_compare> ops[] = {
        {"SCMP_CMP_NE", SCMP_CMP_NE}, {"SCMP_CMP_LT", SCMP_CMP_LT}, {"SCMP_CMP_LE", SCMP_CMP_LE},
        {"SCMP_CMP_EQ", SCMP_CMP_EQ}, {"SCMP_CMP_GE", SCMP_CMP_GE}, {"SCMP_CMP_GT", SCMP_CMP_GT},
        {"SCMP_CMP_MASKED_EQ", SCMP_CMP_MASKED_EQ}};
    for (const auto& [name, v] : ops)
        if (op == name) return v;
    return plain_error("seccomp: unknown operator " + op);
}

} // namespace

Result<SeccompProfile> parse_profile(const std::string& yaml_text, const std::string& origin,
                                     const std::vector<int>& granted) {
    try {
        return parse(YAML::Load(yaml_text), origin, granted);
    } catch (const ParseError& e) {
        return plain_error(e.message);
    } catch (const YAML::Exception& e) {
        return plain_error(fmt::format("{}:{}: {}", origin, e.mark.line + 1, e.msg));
    }
}

Result<SeccompProfile> load_profile(const std::string& path, const std::vector<int>& granted) {
    std::string text;
    if (!read_file(path.c_str(), text)) return sys_error("read seccomp profile " + path);
    return parse_profile(text, path, granted);
}

Result<Program> compile(const SeccompProfile& profile) {
    auto def = action_value(profile.default_action, profile.default_errno);
    if (!def) return def.error();
    Ctx c(*def);
    if (!c.ctx) return plain_error("seccomp_init failed");
    // no_new_privs is the runtime's decision (process.noNewPrivileges), not the filter's.
    seccomp_attr_set(c.ctx, SCMP_FLTATR_CTL_NNP, 0);
    for (const auto& a : profile.architectures) {
        uint32_t arch = seccomp_arch_resolve_name(a.c_str() + (starts_with(a, "SCMP_ARCH_") ? 10 : 0));
        if (arch == 0) {
            std::string lower = a.substr(starts_with(a, "SCMP_ARCH_") ? 10 : 0);
            for (auto& ch : lower) ch = static_cast<char>(::tolower(static_cast<unsigned char>(ch)));
            arch = seccomp_arch_resolve_name(lower.c_str());
        }
        if (arch == 0) return plain_error("seccomp: unknown architecture " + a);
        int r = seccomp_arch_add(c.ctx, arch);
        if (r < 0 && r != -EEXIST) return sys_error("seccomp_arch_add " + a, -r);
    }
    Program prog;
    for (const auto& f : profile.flags) {
        if (f == "SECCOMP_FILTER_FLAG_LOG") prog.flags |= SECCOMP_FILTER_FLAG_LOG;
        else if (f == "SECCOMP_FILTER_FLAG_SPEC_ALLOW") prog.flags |= SECCOMP_FILTER_FLAG_SPEC_ALLOW;
        else if (f == "SECCOMP_FILTER_FLAG_TSYNC") prog.flags |= SECCOMP_FILTER_FLAG_TSYNC;
        else return plain_error("seccomp: unknown flag " + f);
    }
    for (const auto& rule : profile.syscalls) {
        auto act = action_value(rule.action, rule.errno_ret);
        if (!act) return act.error();
        if (*act == *def) continue; // libseccomp refuses a rule that repeats the default
        std::vector<scmp_arg_cmp> cmps;
        for (const auto& a : rule.args) {
            auto op = op_value(a.op);
            if (!op) return op.error();
            cmps.push_back({a.index, *op, a.value, a.value_two});
        }
        for (const auto& name : rule.names) {
            int nr = seccomp_syscall_resolve_name(name.c_str());
            if (nr == __NR_SCMP_ERROR) continue; // a call this libseccomp or kernel does not know
            int r = seccomp_rule_add_array(c.ctx, *act, nr, static_cast<unsigned>(cmps.size()), cmps.data());
            if (r < 0) return sys_error("seccomp_rule_add " + name, -r);
        }
    }
    Fd mem(::memfd_create("seccomp-bpf", MFD_CLOEXEC));
    if (!mem) return sys_error("memfd_create");
    if (int r = seccomp_export_bpf(c.ctx, mem.get()); r < 0) return sys_error("seccomp_export_bpf", -r);
    off_t size = ::lseek(mem.get(), 0, SEEK_END);
    if (size <= 0 || size % sizeof(sock_filter)) return plain_error("seccomp: bad exported program");
    prog.filter.resize(static_cast<size_t>(size) / sizeof(sock_filter));
    if (::pread(mem.get(), prog.filter.data(), static_cast<size_t>(size), 0) != size)
        return sys_error("read exported seccomp program");
    return prog;
}

int install(const Program& prog) noexcept {
    sock_fprog fprog{};
    fprog.len = static_cast<unsigned short>(prog.filter.size());
    fprog.filter = const_cast<sock_filter*>(prog.filter.data());
    if (::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, prog.flags, &fprog) < 0) return errno;
    return 0;
}

} // namespace keel::runtime::seccomp
