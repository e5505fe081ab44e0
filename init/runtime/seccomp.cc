// Seccomp profiles: YAML -> SeccompProfile (conditions resolved) -> BPF (libseccomp) -> seccomp(2).
// The YAML format is documented at the top of config/seccomp/default.yml.
#include "runtime/seccomp.h"

#include <linux/seccomp.h>
#include <seccomp.h>
#include <sys/capability.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <functional>
#include <limits>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include "common/fd.h"
#include "common/strings.h"

namespace keel::runtime::seccomp {

namespace {

const std::vector<std::string> kActions = {
    "SCMP_ACT_ALLOW",       "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP",  "SCMP_ACT_LOG",  "SCMP_ACT_TRACE"};
const std::vector<std::string> kOps = {"SCMP_CMP_NE",       "SCMP_CMP_LT", "SCMP_CMP_LE",
                                       "SCMP_CMP_EQ",       "SCMP_CMP_GE", "SCMP_CMP_GT",
                                       "SCMP_CMP_MASKED_EQ"};
const std::vector<std::string> kFlags = {
    "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_TSYNC"};

// libseccomp spells architectures "x86_64", "x32"; profiles use the SCMP_ARCH_X86_64 constants
// of the OCI spec. 0 when libseccomp does not know the name.
uint32_t arch_token(const std::string& name) {
    if (!starts_with(name, "SCMP_ARCH_")) return 0;
    std::string lower = name.substr(10);
    for (auto& c : lower)
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return seccomp_arch_resolve_name(lower.c_str());
}

// Parsing throws ParseError (and yaml-cpp throws YAML::Exception); both are caught in
// parse_profile and never leave this file.
struct ParseError {
    std::string message;
};

// The profile being read: where errors point, and what the conditions are resolved against.
struct Reader {
    const std::string& origin;
    const std::vector<int>& granted;

    // "default.yml:12: syscalls[3]: <what>"
    [[noreturn]] void fail(const YAML::Node& at, const std::string& path,
                           const std::string& what) const {
        std::string loc =
            at.Mark().line >= 0 ? fmt::format("{}:{}", origin, at.Mark().line + 1) : origin;
        throw ParseError{path.empty() ? fmt::format("{}: {}", loc, what)
                                      : fmt::format("{}: {}: {}", loc, path, what)};
    }

    static std::string suggest(const std::string& word, const std::vector<std::string>& known) {
        std::string near = closest(word, known);
        return near.empty() ? "" : " (did you mean '" + near + "'?)";
    }

    // A typo in a key would otherwise silently drop a rule or a condition: refuse it.
    void check_keys(const YAML::Node& map, const std::string& path,
                    const std::vector<std::string>& allowed) const {
        if (!map.IsMap()) fail(map, path, "expected a mapping");
        for (const auto& kv : map) {
            std::string key = kv.first.Scalar();
            if (std::find(allowed.begin(), allowed.end(), key) == allowed.end())
                fail(kv.first, path, "unknown key '" + key + "'" + suggest(key, allowed));
        }
    }

    std::string scalar(const YAML::Node& n, const std::string& path) const {
        if (!n.IsScalar()) fail(n, path, "expected a single value");
        return n.Scalar();
    }

    // A list of strings; a single string is accepted as a list of one.
    std::vector<std::string> strings(const YAML::Node& n, const std::string& path) const {
        if (n.IsScalar()) return {n.Scalar()};
        if (!n.IsSequence()) fail(n, path, "expected a list of strings");
        std::vector<std::string> out;
        for (const auto& item : n)
            out.push_back(scalar(item, path));
        return out;
    }

    std::string one_of(const YAML::Node& n, const std::string& path,
                       const std::vector<std::string>& known, const char* what) const {
        std::string s = scalar(n, path);
        if (std::find(known.begin(), known.end(), s) == known.end())
            fail(n, path, fmt::format("unknown {} '{}'{}", what, s, suggest(s, known)));
        return s;
    }

    uint64_t number(const YAML::Node& n, const std::string& path, uint64_t max) const {
        std::string s = scalar(n, path);
        uint64_t v = 0;
        try {
            v = n.as<uint64_t>(); // decimal or 0x hex
        } catch (const YAML::Exception&) {
            fail(n, path, "expected an unsigned number, got '" + s + "'");
        }
        if (v > max) fail(n, path, fmt::format("{} is out of range (at most {})", s, max));
        return v;
    }

    // An errno by name (EPERM) or number; the name is what a reader of the profile recognises.
    int errno_value(const YAML::Node& n, const std::string& path) const {
        std::string s = scalar(n, path);
        if (!s.empty() && std::isdigit(static_cast<unsigned char>(s[0])))
            return static_cast<int>(number(n, path, 4095));
        for (int e = 1; e < 4096; ++e)
            if (const char* name = strerrorname_np(e); name && s == name) return e;
        fail(n, path, "unknown errno '" + s + "'");
    }

    // Whether any capability of the list is granted. Every name is checked, so a misspelt
    // capability is an error even when another entry already decided the answer.
    bool any_granted(const YAML::Node& n, const std::string& path) const {
        bool any = false;
        for (const auto& name : strings(n, path)) {
            std::string lower = name;
            for (auto& c : lower)
                c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
            cap_value_t cap = 0;
            // libcap also takes bare numbers; a profile names capabilities.
            if (!starts_with(name, "CAP_") || cap_from_name(lower.c_str(), &cap) < 0)
                fail(n, path, "unknown capability '" + name + "'");
            if (std::find(granted.begin(), granted.end(), static_cast<int>(cap)) != granted.end())
                any = true;
        }
        return any;
    }

    // Whether the rule is for the architecture this runtime runs on.
    bool native_arch_listed(const YAML::Node& n, const std::string& path) const {
        bool match = false;
        for (const auto& name : strings(n, path)) {
            uint32_t arch = arch_token(name);
            if (arch == 0) fail(n, path, "unknown architecture '" + name + "'");
            if (arch == seccomp_arch_native()) match = true;
        }
        return match;
    }

    SeccompArg arg(const YAML::Node& n, const std::string& path) const {
        check_keys(n, path, {"index", "value", "value_two", "op"});
        if (!n["index"]) fail(n, path, "missing 'index'");
        if (!n["op"]) fail(n, path, "missing 'op'");
        SeccompArg a;
        a.index =
            static_cast<unsigned>(number(n["index"], path + ".index", 5)); // six syscall arguments
        if (n["value"])
            a.value = number(n["value"], path + ".value", std::numeric_limits<uint64_t>::max());
        if (n["value_two"])
            a.value_two =
                number(n["value_two"], path + ".value_two", std::numeric_limits<uint64_t>::max());
        a.op = one_of(n["op"], path + ".op", kOps, "operator");
        return a;
    }

    // The rule, or nothing when its conditions exclude it for this container.
    std::optional<SeccompRule> rule(const YAML::Node& n, const std::string& path) const {
        check_keys(
            n, path,
            {"names", "action", "errno", "args", "caps_any", "caps_none", "arches", "comment"});
        if (!n["names"]) fail(n, path, "missing 'names'");
        if (!n["action"]) fail(n, path, "missing 'action'");
        SeccompRule r;
        r.names = strings(n["names"], path + ".names");
        r.action = one_of(n["action"], path + ".action", kActions, "action");
        if (n["errno"]) {
            if (r.action != "SCMP_ACT_ERRNO" && r.action != "SCMP_ACT_TRACE")
                fail(n["errno"], path + ".errno",
                     "only SCMP_ACT_ERRNO and SCMP_ACT_TRACE take a value");
            r.errno_ret = errno_value(n["errno"], path + ".errno");
        }
        if (const YAML::Node args = n["args"]) {
            if (!args.IsSequence()) fail(args, path + ".args", "expected a list");
            for (size_t i = 0; i < args.size(); ++i)
                r.args.push_back(arg(args[i], fmt::format("{}.args[{}]", path, i)));
        }
        // All conditions are evaluated (and so validated) before any of them drops the rule.
        bool keep = true;
        if (n["caps_any"] && !any_granted(n["caps_any"], path + ".caps_any")) keep = false;
        if (n["caps_none"] && any_granted(n["caps_none"], path + ".caps_none")) keep = false;
        if (n["arches"] && !native_arch_listed(n["arches"], path + ".arches")) keep = false;
        if (!keep) return std::nullopt;
        return r;
    }

    SeccompProfile profile(const YAML::Node& root) const {
        check_keys(root, "",
                   {"default_action", "default_errno", "architectures", "flags", "syscalls"});
        SeccompProfile p;
        if (root["default_action"])
            p.default_action = one_of(root["default_action"], "default_action", kActions, "action");
        if (root["default_errno"])
            p.default_errno = errno_value(root["default_errno"], "default_errno");
        if (root["architectures"]) {
            p.architectures = strings(root["architectures"], "architectures");
            for (const auto& a : p.architectures)
                if (arch_token(a) == 0)
                    fail(root["architectures"], "architectures",
                         "unknown architecture '" + a + "'");
        }
        if (root["flags"]) {
            p.flags = strings(root["flags"], "flags");
            for (const auto& f : p.flags)
                if (std::find(kFlags.begin(), kFlags.end(), f) == kFlags.end())
                    fail(root["flags"], "flags", "unknown flag '" + f + "'" + suggest(f, kFlags));
        }
        if (const YAML::Node rules = root["syscalls"]) {
            if (!rules.IsSequence()) fail(rules, "syscalls", "expected a list");
            for (size_t i = 0; i < rules.size(); ++i)
                if (auto r = rule(rules[i], fmt::format("syscalls[{}]", i)))
                    p.syscalls.push_back(std::move(*r));
        }
        return p;
    }
};

Result<uint32_t> action_value(const std::string& action, std::optional<int> ret) {
    if (action == "SCMP_ACT_ALLOW") return SCMP_ACT_ALLOW;
    if (action == "SCMP_ACT_ERRNO")
        return SCMP_ACT_ERRNO(static_cast<uint32_t>(ret.value_or(EPERM)));
    // SCMP_ACT_KILL is the historical name of killing the thread.
    if (action == "SCMP_ACT_KILL" || action == "SCMP_ACT_KILL_THREAD") return SCMP_ACT_KILL_THREAD;
    if (action == "SCMP_ACT_KILL_PROCESS") return SCMP_ACT_KILL_PROCESS;
    if (action == "SCMP_ACT_TRAP") return SCMP_ACT_TRAP;
    if (action == "SCMP_ACT_LOG") return SCMP_ACT_LOG;
    if (action == "SCMP_ACT_TRACE") return SCMP_ACT_TRACE(static_cast<uint32_t>(ret.value_or(0)));
    return plain_error("seccomp: unknown action " + action);
}

Result<scmp_compare> op_value(const std::string& op) {
    static const std::pair<const char*, scmp_compare> ops[] = {
        {"SCMP_CMP_NE", SCMP_CMP_NE},
        {"SCMP_CMP_LT", SCMP_CMP_LT},
        {"SCMP_CMP_LE", SCMP_CMP_LE},
        {"SCMP_CMP_EQ", SCMP_CMP_EQ},
        {"SCMP_CMP_GE", SCMP_CMP_GE},
        {"SCMP_CMP_GT", SCMP_CMP_GT},
        {"SCMP_CMP_MASKED_EQ", SCMP_CMP_MASKED_EQ}};
    for (const auto& [name, v] : ops)
        if (op == name) return v;
    return plain_error("seccomp: unknown operator " + op);
}

Result<unsigned> flag_value(const std::string& flag) {
    if (flag == "SECCOMP_FILTER_FLAG_LOG") return SECCOMP_FILTER_FLAG_LOG;
    if (flag == "SECCOMP_FILTER_FLAG_SPEC_ALLOW") return SECCOMP_FILTER_FLAG_SPEC_ALLOW;
    if (flag == "SECCOMP_FILTER_FLAG_TSYNC") return SECCOMP_FILTER_FLAG_TSYNC;
    return plain_error("seccomp: unknown flag " + flag);
}

// The libseccomp filter context, released on every path.
class Filter {
  public:
    explicit Filter(uint32_t default_action) : ctx_(seccomp_init(default_action)) {}
    Filter(const Filter&) = delete;
    Filter& operator=(const Filter&) = delete;
    ~Filter() {
        if (ctx_) seccomp_release(ctx_);
    }
    scmp_filter_ctx get() const { return ctx_; }

  private:
    scmp_filter_ctx ctx_;
};

} // namespace

namespace {

// The profile from a loaded document; errors as parse_profile's.
Result<SeccompProfile> read_profile(const std::function<YAML::Node()>& load,
                                    const std::string& origin, const std::vector<int>& granted) {
    try {
        return Reader{origin, granted}.profile(load());
    } catch (const ParseError& e) {
        return plain_error(e.message);
    } catch (const YAML::Exception& e) {
        if (e.mark.line < 0) return plain_error(fmt::format("{}: {}", origin, e.msg));
        return plain_error(fmt::format("{}:{}: {}", origin, e.mark.line + 1, e.msg));
    } catch (
        const std::exception& e) { // std::bad_alloc: loading configuration must not crash keeld
        return plain_error(fmt::format("{}: {}", origin, e.what()));
    }
}

} // namespace

Result<SeccompProfile> parse_profile(const std::string& yaml_text, const std::string& origin,
                                     const std::vector<int>& granted) {
    return read_profile([&] { return YAML::Load(yaml_text); }, origin, granted);
}

Result<SeccompProfile> load_profile(const std::string& path, const std::vector<int>& granted) {
    std::string text;
    if (!read_file(path.c_str(), text)) return sys_error("read seccomp profile " + path);
    // A daemon loads the same profile for every start, and parsing its YAML was the largest
    // part of a workload's start under emulation (18 ms of 90 under TCG). Kept by file content
    // (read every time: an edited file is parsed again): the document, and the profile per
    // grant (services with different capabilities share the document: 15 ms each under TCG).
    struct Document {
        std::string path, text;
        YAML::Node root;
        std::vector<std::pair<std::vector<int>, SeccompProfile>> profiles;
    };
    static std::vector<Document> cache; // newest last
    auto doc = std::find_if(cache.begin(), cache.end(),
                            [&](const Document& d) { return d.path == path && d.text == text; });
    if (doc != cache.end()) {
        for (const auto& [g, profile] : doc->profiles)
            if (g == granted) return profile;
    }
    YAML::Node root;
    auto p = read_profile(
        [&] {
            root = doc != cache.end() ? doc->root : YAML::Load(text);
            return root;
        },
        path, granted);
    if (!p) return p;
    if (doc == cache.end()) {
        if (cache.size() >= 4) cache.erase(cache.begin());
        cache.push_back({path, std::move(text), root, {}});
        doc = cache.end() - 1;
    }
    if (doc->profiles.size() >= 16) doc->profiles.erase(doc->profiles.begin());
    doc->profiles.emplace_back(granted, *p);
    return p;
}

Result<Program> compile(const SeccompProfile& profile) {
    Program prog;
    for (const auto& f : profile.flags) {
        auto v = flag_value(f);
        if (!v) return v.error();
        prog.flags |= *v;
    }
    auto def = action_value(profile.default_action, profile.default_errno);
    if (!def) return def.error();
    Filter filter(*def);
    if (!filter.get())
        return plain_error("seccomp_init " + profile.default_action + ": rejected by libseccomp");
    // no_new_privs is the runtime's decision (process.noNewPrivileges), set with prctl before
    // the filter is installed; libseccomp would otherwise set it on its own.
    if (int r = seccomp_attr_set(filter.get(), SCMP_FLTATR_CTL_NNP, 0); r < 0)
        return sys_error("seccomp_attr_set CTL_NNP", -r);
    for (const auto& a : profile.architectures) {
        uint32_t arch = arch_token(a);
        if (arch == 0) return plain_error("seccomp: unknown architecture " + a);
        // The native architecture is in every new filter already.
        if (int r = seccomp_arch_add(filter.get(), arch); r < 0 && r != -EEXIST)
            return sys_error("seccomp_arch_add " + a, -r);
    }
    for (const auto& rule : profile.syscalls) {
        auto act = action_value(rule.action, rule.errno_ret);
        if (!act) return act.error();
        // libseccomp refuses a rule that repeats the default action; it would change nothing.
        if (*act == *def) continue;
        std::vector<scmp_arg_cmp> cmps;
        for (const auto& a : rule.args) {
            auto op = op_value(a.op);
            if (!op) return op.error();
            cmps.push_back(scmp_arg_cmp{a.index, *op, a.value, a.value_two});
        }
        for (const auto& name : rule.names) {
            // A call this libseccomp does not know cannot be made through it either: profiles
            // list calls of newer kernels and of other architectures.
            int nr = seccomp_syscall_resolve_name(name.c_str());
            if (nr == __NR_SCMP_ERROR) continue;
            int r = seccomp_rule_add_array(filter.get(), *act, nr,
                                           static_cast<unsigned>(cmps.size()), cmps.data());
            if (r < 0) return sys_error("seccomp_rule_add " + name, -r);
        }
    }
    // libseccomp writes the program to an fd; a memfd keeps it off the filesystem.
    Fd mem(::memfd_create("keel-seccomp-bpf", MFD_CLOEXEC));
    if (!mem) return sys_error("memfd_create seccomp program");
    if (int r = seccomp_export_bpf(filter.get(), mem.get()); r < 0)
        return sys_error("seccomp_export_bpf", -r);
    off_t size = ::lseek(mem.get(), 0, SEEK_END);
    if (size < 0) return sys_error("lseek seccomp program");
    if (size == 0 || size % static_cast<off_t>(sizeof(sock_filter)) != 0)
        return plain_error(fmt::format("seccomp_export_bpf: {} bytes is not a BPF program", size));
    prog.filter.resize(static_cast<size_t>(size) / sizeof(sock_filter));
    auto* out = reinterpret_cast<char*>(prog.filter.data());
    for (off_t done = 0; done < size;) {
        ssize_t n = ::pread(mem.get(), out + done, static_cast<size_t>(size - done), done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0)
            return n < 0 ? sys_error("read seccomp program")
                         : plain_error("read seccomp program: short read");
        done += n;
    }
    return prog;
}

int install(const Program& prog) noexcept {
    // The kernel copies the program; the const_cast only satisfies the struct's type.
    sock_fprog fprog{};
    fprog.len = static_cast<unsigned short>(prog.filter.size());
    fprog.filter = const_cast<sock_filter*>(prog.filter.data());
    if (prog.filter.size() > std::numeric_limits<unsigned short>::max()) return EINVAL;
    long r = ::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, prog.flags, &fprog);
    if (r < 0) return errno;
    // With SECCOMP_FILTER_FLAG_TSYNC a positive result is the id of a thread that could not
    // be synchronised: nothing was installed.
    if (r > 0) return ESRCH;
    return 0;
}

// The profile as one string: equal profiles, equal keys.
static std::string cache_key(const SeccompProfile& p) {
    std::string k = p.default_action + "|" + std::to_string(p.default_errno.value_or(-1)) + "|";
    for (const auto& a : p.architectures)
        k += a + ",";
    k += "|";
    for (const auto& f : p.flags)
        k += f + ",";
    for (const auto& r : p.syscalls) {
        k += "\n" + r.action + "/" + std::to_string(r.errno_ret.value_or(-1)) + ":";
        for (const auto& n : r.names)
            k += n + ",";
        for (const auto& a : r.args)
            k += "(" + std::to_string(a.index) + a.op + std::to_string(a.value) + "," +
                 std::to_string(a.value_two) + ")";
    }
    return k;
}

Result<Program> compile_cached(const SeccompProfile& profile) {
    // A daemon starts the same few profiles again and again; libseccomp takes milliseconds
    // per compile on a fast host (most of a container start) and far longer under emulation.
    static std::vector<std::pair<std::string, Program>> cache; // newest last
    std::string key = cache_key(profile);
    for (auto it = cache.begin(); it != cache.end(); ++it)
        if (it->first == key) {
            Program p = it->second;
            std::rotate(it, it + 1, cache.end());
            return p;
        }
    auto p = compile(profile);
    if (!p) return p;
    if (cache.size() >= 16) cache.erase(cache.begin());
    cache.emplace_back(std::move(key), *p);
    return p;
}

} // namespace keel::runtime::seccomp
