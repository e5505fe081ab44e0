// OCI runtime-spec config.json -> ContainerSpec, section by section. The walk throws
// FieldError, caught in parse_config: a config file is read once, before anything is created,
// so each check can be one line whose message carries the JSON path of the field at fault.
#include "runtime/oci.h"

#include <linux/capability.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <limits>
#include <optional>
#include <type_traits>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/fd.h"
#include "common/strings.h"
#include "runtime/defaults.h"
#include "runtime/sysctl.h"

namespace keel::runtime::oci {

namespace {

using json = nlohmann::json;
using Names = std::initializer_list<const char*>;

struct FieldError {
    std::string message;
};

bool contains(Names names, const std::string& s) {
    return std::any_of(names.begin(), names.end(), [&](const char* n) { return s == n; });
}

// Whether a value requests nothing: null, "", [], false, or an object of such values
// ({"prestart": []}). A spec field keel does not implement is accepted only in this form.
// A loop, not a recursion: the nesting depth is the file's to choose, and 20,000 levels of
// objects overflowed the stack (found by fuzz_oci).
bool is_empty(const json& v) {
    std::vector<const json*> todo{&v};
    while (!todo.empty()) {
        const json& j = *todo.back();
        todo.pop_back();
        if (j.is_object()) {
            for (const auto& m : j)
                todo.push_back(&m);
            continue;
        }
        bool empty = j.is_null() || (j.is_boolean() && !j.get<bool>()) ||
                     (j.is_string() && j.get_ref<const std::string&>().empty()) ||
                     (j.is_array() && j.empty());
        if (!empty) return false;
    }
    return true;
}

std::string json_quote(const std::string& s) {
    return json(s).dump();
}

bool absolute(const std::string& p) {
    return !p.empty() && p[0] == '/';
}

// A value in the document together with the JSON path that reaches it
// ("linux.namespaces[2].type"); the document root has the empty path.
class Node {
  public:
    Node(const json& v, std::string path) : v_(&v), path_(std::move(path)) {}

    [[noreturn]] void fail(const std::string& why) const {
        throw FieldError{(path_.empty() ? "config.json" : path_) + ": " + why};
    }

    // An absent member and one set to null are the same: JSON writers differ in whether they
    // omit unset optional fields or write null.
    std::optional<Node> get(const std::string& key) const {
        require_object();
        auto it = v_->find(key);
        if (it == v_->end() || it->is_null()) return std::nullopt;
        return Node(*it, child(key));
    }

    Node need(const std::string& key) const {
        auto n = get(key);
        if (!n) fail_member(key, "required");
        return *n;
    }

    // For a member that is absent, or whose fault lies in its relation to its siblings.
    [[noreturn]] void fail_member(const std::string& key, const std::string& why) const {
        throw FieldError{child(key) + ": " + why};
    }

    std::vector<Node> items() const {
        if (!v_->is_array()) fail("expected an array");
        std::vector<Node> out;
        for (size_t i = 0; i < v_->size(); ++i)
            out.emplace_back((*v_)[i], fmt::format("{}[{}]", path_, i));
        return out;
    }

    std::vector<std::pair<std::string, Node>> members() const {
        require_object();
        std::vector<std::pair<std::string, Node>> out;
        for (const auto& m : v_->items())
            out.emplace_back(m.key(), Node(m.value(), child(m.key())));
        return out;
    }

    std::string str() const {
        if (!v_->is_string()) fail("expected a string");
        return v_->get<std::string>();
    }

    bool boolean() const {
        if (!v_->is_boolean()) fail("expected true or false");
        return v_->get<bool>();
    }

    // An integer that fits T; a fraction or an out-of-range value is an error, not a cast.
    template <class T> T number() const {
        if (v_->is_number_unsigned()) {
            auto u = v_->get<uint64_t>();
            if (u > static_cast<uint64_t>(std::numeric_limits<T>::max()))
                fail(fmt::format("{} is out of range", u));
            return static_cast<T>(u);
        }
        if (!v_->is_number_integer()) fail("expected an integer");
        auto i = v_->get<int64_t>(); // negative: non-negative values are unsigned in nlohmann
        if constexpr (std::is_unsigned_v<T>) fail(fmt::format("must not be negative, got {}", i));
        if (i < static_cast<int64_t>(std::numeric_limits<T>::min()))
            fail(fmt::format("{} is out of range", i));
        return static_cast<T>(i);
    }

    std::vector<std::string> strings() const {
        if (!v_->is_array() ||
            !std::all_of(v_->begin(), v_->end(), [](const json& e) { return e.is_string(); }))
            fail("expected an array of strings");
        return v_->get<std::vector<std::string>>();
    }

    std::string absolute_path() const {
        std::string p = str();
        if (!absolute(p)) fail("must be an absolute path, got " + json_quote(p));
        return p;
    }

    // Every member must be one of `supported`. Fields the spec defines but keel does not
    // implement (`unsupported`) pass only when they request nothing; anything else is a typo
    // or a newer spec, and either way must not be dropped silently.
    void check_fields(Names supported, Names unsupported = {}) const {
        require_object();
        for (const auto& m : v_->items()) {
            if (contains(supported, m.key())) continue;
            if (contains(unsupported, m.key())) {
                if (is_empty(m.value())) continue;
                throw FieldError{child(m.key()) + ": not supported by keel"};
            }
            std::vector<std::string> known(supported.begin(), supported.end());
            known.insert(known.end(), unsupported.begin(), unsupported.end());
            std::string guess = closest(m.key(), known);
            throw FieldError{child(m.key()) + ": unknown field" +
                             (guess.empty() ? "" : " (did you mean " + guess + "?)")};
        }
    }

  private:
    void require_object() const {
        if (!v_->is_object()) fail("expected an object");
    }
    std::string child(const std::string& key) const {
        return path_.empty() ? key : path_ + "." + key;
    }

    const json* v_;
    std::string path_;
};

// --- tables -------------------------------------------------------------------------------

// Tables read better in columns.
// clang-format off
#define KEEL_NAMED(c) {c, #c}
constexpr std::pair<int, const char*> kCapabilities[] = {
    KEEL_NAMED(CAP_CHOWN),           KEEL_NAMED(CAP_DAC_OVERRIDE),   KEEL_NAMED(CAP_DAC_READ_SEARCH),
    KEEL_NAMED(CAP_FOWNER),          KEEL_NAMED(CAP_FSETID),         KEEL_NAMED(CAP_KILL),
    KEEL_NAMED(CAP_SETGID),          KEEL_NAMED(CAP_SETUID),         KEEL_NAMED(CAP_SETPCAP),
    KEEL_NAMED(CAP_LINUX_IMMUTABLE), KEEL_NAMED(CAP_NET_BIND_SERVICE), KEEL_NAMED(CAP_NET_BROADCAST),
    KEEL_NAMED(CAP_NET_ADMIN),       KEEL_NAMED(CAP_NET_RAW),        KEEL_NAMED(CAP_IPC_LOCK),
    KEEL_NAMED(CAP_IPC_OWNER),       KEEL_NAMED(CAP_SYS_MODULE),     KEEL_NAMED(CAP_SYS_RAWIO),
    KEEL_NAMED(CAP_SYS_CHROOT),      KEEL_NAMED(CAP_SYS_PTRACE),     KEEL_NAMED(CAP_SYS_PACCT),
    KEEL_NAMED(CAP_SYS_ADMIN),       KEEL_NAMED(CAP_SYS_BOOT),       KEEL_NAMED(CAP_SYS_NICE),
    KEEL_NAMED(CAP_SYS_RESOURCE),    KEEL_NAMED(CAP_SYS_TIME),       KEEL_NAMED(CAP_SYS_TTY_CONFIG),
    KEEL_NAMED(CAP_MKNOD),           KEEL_NAMED(CAP_LEASE),          KEEL_NAMED(CAP_AUDIT_WRITE),
    KEEL_NAMED(CAP_AUDIT_CONTROL),   KEEL_NAMED(CAP_SETFCAP),        KEEL_NAMED(CAP_MAC_OVERRIDE),
    KEEL_NAMED(CAP_MAC_ADMIN),       KEEL_NAMED(CAP_SYSLOG),         KEEL_NAMED(CAP_WAKE_ALARM),
    KEEL_NAMED(CAP_BLOCK_SUSPEND),   KEEL_NAMED(CAP_AUDIT_READ),     KEEL_NAMED(CAP_PERFMON),
    KEEL_NAMED(CAP_BPF),             KEEL_NAMED(CAP_CHECKPOINT_RESTORE),
};

constexpr std::pair<int, const char*> kRlimits[] = {
    KEEL_NAMED(RLIMIT_AS),      KEEL_NAMED(RLIMIT_CORE),       KEEL_NAMED(RLIMIT_CPU),
    KEEL_NAMED(RLIMIT_DATA),    KEEL_NAMED(RLIMIT_FSIZE),      KEEL_NAMED(RLIMIT_LOCKS),
    KEEL_NAMED(RLIMIT_MEMLOCK), KEEL_NAMED(RLIMIT_MSGQUEUE),   KEEL_NAMED(RLIMIT_NICE),
    KEEL_NAMED(RLIMIT_NOFILE),  KEEL_NAMED(RLIMIT_NPROC),      KEEL_NAMED(RLIMIT_RSS),
    KEEL_NAMED(RLIMIT_RTPRIO),  KEEL_NAMED(RLIMIT_RTTIME),     KEEL_NAMED(RLIMIT_SIGPENDING),
    KEEL_NAMED(RLIMIT_STACK),
};
#undef KEEL_NAMED

// Mount options that are MS_* flags: each sets some bits and clears others ("rw" clears
// MS_RDONLY), so the last of two contradicting options wins, as with mount(8).
struct FlagOption {
    const char* name;
    unsigned long set, clear;
};
constexpr FlagOption kFlagOptions[] = {
    {"defaults", 0, 0},
    {"ro", MS_RDONLY, 0},          {"rw", 0, MS_RDONLY},
    {"nosuid", MS_NOSUID, 0},      {"suid", 0, MS_NOSUID},
    {"nodev", MS_NODEV, 0},        {"dev", 0, MS_NODEV},
    {"noexec", MS_NOEXEC, 0},      {"exec", 0, MS_NOEXEC},
    {"sync", MS_SYNCHRONOUS, 0},   {"async", 0, MS_SYNCHRONOUS},
    {"dirsync", MS_DIRSYNC, 0},
    {"mand", MS_MANDLOCK, 0},      {"nomand", 0, MS_MANDLOCK},
    {"noatime", MS_NOATIME, 0},    {"atime", 0, MS_NOATIME},
    {"nodiratime", MS_NODIRATIME, 0}, {"diratime", 0, MS_NODIRATIME},
    {"relatime", MS_RELATIME, 0},  {"norelatime", 0, MS_RELATIME},
    {"strictatime", MS_STRICTATIME, 0}, {"nostrictatime", 0, MS_STRICTATIME},
    {"nosymfollow", MS_NOSYMFOLLOW, 0}, {"symfollow", 0, MS_NOSYMFOLLOW},
    {"silent", MS_SILENT, 0},      {"loud", 0, MS_SILENT},
    {"bind", MS_BIND, 0},          {"rbind", MS_BIND | MS_REC, 0},
};

// Propagation types, for mount options and linux.rootfsPropagation. The "r" forms apply to
// the whole subtree.
constexpr std::pair<const char*, unsigned long> kPropagation[] = {
    {"private", MS_PRIVATE},       {"rprivate", MS_PRIVATE | MS_REC},
    {"slave", MS_SLAVE},           {"rslave", MS_SLAVE | MS_REC},
    {"shared", MS_SHARED},         {"rshared", MS_SHARED | MS_REC},
    {"unbindable", MS_UNBINDABLE}, {"runbindable", MS_UNBINDABLE | MS_REC},
};

// Options the spec (or runc and crun) define that keel does not implement. They must not fall
// through to the filesystem data, where they would fail late with a bare EINVAL, or, for a
// bind mount, be dropped. "remount" has no meaning here: every mount is made fresh.
constexpr Names kUnsupportedMountOptions = {
    "remount", "idmap", "ridmap", "tmpcopyup", "rro", "rrw", "rnosuid", "rsuid", "rnodev",
    "rdev", "rnoexec", "rexec", "rnodiratime", "rdiratime", "rrelatime", "rnorelatime",
    "rnoatime", "ratime", "rstrictatime", "rnostrictatime", "rnosymfollow", "rsymfollow",
};

constexpr Names kSeccompActions = {
    "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP",
    "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE",       "SCMP_ACT_ALLOW",       "SCMP_ACT_LOG",
};
constexpr Names kSeccompOperators = {
    "SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ",
    "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ",
};
constexpr Names kSeccompFlags = {
    "SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
};
// clang-format on

std::optional<unsigned long> propagation_from_name(const std::string& name) {
    for (const auto& [n, flags] : kPropagation)
        if (name == n) return flags;
    return std::nullopt;
}

std::string join_path(const std::string& dir, const std::string& p) {
    if (absolute(p) || dir.empty()) return p;
    return dir + "/" + p;
}

// --- sections -----------------------------------------------------------------------------

void check_version(const Node& n) {
    std::string v = n.str();
    // 1.0.x to 1.2.x, with any pre-release or build suffix ("1.0.2-dev").
    bool ok = v.size() >= 5 && v.compare(0, 2, "1.") == 0 && v[2] >= '0' && v[2] <= '2' &&
              v[3] == '.' && v[4] >= '0' && v[4] <= '9';
    if (!ok) n.fail("unsupported version " + json_quote(v) + " (keel accepts 1.0.x to 1.2.x)");
}

std::vector<int> parse_cap_set(const Node& set) {
    std::vector<int> out;
    for (const auto& n : set.items()) {
        std::string name = n.str();
        int cap = capability_from_name(name);
        if (cap < 0) n.fail("unknown capability " + name);
        out.push_back(cap);
    }
    return out;
}

// A missing set is an empty one. runc leaves the capabilities untouched when the whole object
// is missing, so such a root process keeps every capability; keel grants nothing not named.
void parse_capabilities(const Node& c, Capabilities& caps) {
    c.check_fields({"bounding", "effective", "inheritable", "permitted", "ambient"});
    std::pair<const char*, std::vector<int>*> sets[] = {
        {"bounding", &caps.bounding},       {"effective", &caps.effective},
        {"inheritable", &caps.inheritable}, {"permitted", &caps.permitted},
        {"ambient", &caps.ambient},
    };
    for (auto& [name, set] : sets)
        if (auto n = c.get(name)) *set = parse_cap_set(*n);
}

Rlimit parse_rlimit(const Node& r, const std::vector<Rlimit>& seen) {
    r.check_fields({"type", "hard", "soft"});
    Node type = r.need("type");
    std::string name = type.str();
    const auto* it = std::find_if(std::begin(kRlimits), std::end(kRlimits),
                                  [&](const auto& e) { return name == e.second; });
    if (it == std::end(kRlimits)) type.fail("unknown rlimit type " + name);
    Rlimit out{it->first, r.need("soft").number<rlim_t>(), r.need("hard").number<rlim_t>()};
    for (const auto& s : seen)
        if (s.resource == out.resource) type.fail("duplicate rlimit " + name);
    if (out.soft > out.hard)
        r.fail(fmt::format("soft limit {} is above hard limit {}", out.soft, out.hard));
    return out;
}

void parse_user(const Node& u, ContainerSpec& spec) {
    u.check_fields({"uid", "gid", "umask", "additionalGids"}, {"username"});
    spec.uid = u.need("uid").number<uid_t>();
    spec.gid = u.need("gid").number<gid_t>();
    if (auto m = u.get("umask")) {
        auto mask = m->number<mode_t>();
        if (mask > 0777) m->fail(fmt::format("{:#o} is not a umask", mask));
        spec.umask = mask;
    }
    if (auto g = u.get("additionalGids"))
        for (const auto& n : g->items())
            spec.additional_gids.push_back(n.number<gid_t>());
}

void parse_process(const Node& p, ContainerSpec& spec) {
    p.check_fields({"terminal", "consoleSize", "user", "args", "env", "cwd", "capabilities",
                    "rlimits", "noNewPrivileges", "oomScoreAdj"},
                   {"apparmorProfile", "selinuxLabel", "commandLine", "ioPriority", "scheduler",
                    "execCPUAffinity"});
    if (auto t = p.get("terminal")) spec.terminal = t->boolean();
    // The size of a terminal is set on the pty by whoever holds its master (the receiver of
    // the console socket, or `keel runtime run` from its own terminal); it is checked here
    // and needs nothing from the runtime.
    if (auto c = p.get("consoleSize")) {
        c->check_fields({"height", "width"});
        (void)c->need("height").number<unsigned short>();
        (void)c->need("width").number<unsigned short>();
    }
    if (auto u = p.get("user")) parse_user(*u, spec);

    Node args = p.need("args");
    spec.args = args.strings();
    if (spec.args.empty()) args.fail("must not be empty");
    if (spec.args[0].empty()) args.items()[0].fail("must not be empty");

    if (auto env = p.get("env")) {
        spec.env = env->strings();
        for (size_t i = 0; i < spec.env.size(); ++i)
            if (spec.env[i].find('=') == std::string::npos || spec.env[i][0] == '=')
                env->items()[i].fail("expected NAME=VALUE, got " + json_quote(spec.env[i]));
    }
    spec.cwd = p.need("cwd").absolute_path();
    if (auto c = p.get("capabilities")) parse_capabilities(*c, spec.caps);
    if (auto r = p.get("rlimits"))
        for (const auto& n : r->items())
            spec.rlimits.push_back(parse_rlimit(n, spec.rlimits));
    // The spec's default is false; ContainerSpec's own default (true) is for Keel services.
    spec.no_new_privileges = false;
    if (auto n = p.get("noNewPrivileges")) spec.no_new_privileges = n->boolean();
    if (auto o = p.get("oomScoreAdj")) {
        int adj = o->number<int>();
        if (adj < -1000 || adj > 1000) o->fail(fmt::format("{} is outside -1000..1000", adj));
        spec.oom_score_adj = adj;
    }
}

void parse_root(const Node& r, const std::string& bundle_dir, ContainerSpec& spec) {
    r.check_fields({"path", "readonly"});
    Node path = r.need("path");
    std::string p = path.str();
    if (p.empty()) path.fail("must not be empty");
    p = join_path(bundle_dir, p);
    struct stat st {};
    if (::stat(p.c_str(), &st) < 0) {
        int err = errno;
        if (err == ENOENT) path.fail("rootfs " + p + " does not exist");
        path.fail(sys_error("rootfs " + p, err).str());
    }
    if (!S_ISDIR(st.st_mode)) path.fail("rootfs " + p + " is not a directory");
    // Canonical and absolute: the child chdirs into it and pivots, long after the bundle
    // directory's meaning (a relative path, a symlink) could have changed.
    char real[PATH_MAX];
    if (!::realpath(p.c_str(), real)) {
        int err = errno;
        path.fail(sys_error("rootfs " + p, err).str());
    }
    spec.rootfs = real;
    if (auto ro = r.get("readonly")) spec.readonly_root = ro->boolean();
}

Mount parse_mount(const Node& m, const std::string& bundle_dir) {
    m.check_fields({"destination", "type", "source", "options"}, {"uidMappings", "gidMappings"});
    Mount out;
    out.destination = m.need("destination").absolute_path();
    if (auto t = m.get("type")) out.type = t->str();
    if (auto s = m.get("source")) out.source = s->str();

    std::vector<std::string> data;
    std::optional<Node> first_data;
    if (auto opts = m.get("options")) {
        for (const auto& o : opts->items()) {
            std::string name = o.str();
            const auto* f = std::find_if(std::begin(kFlagOptions), std::end(kFlagOptions),
                                         [&](const FlagOption& e) { return name == e.name; });
            if (f != std::end(kFlagOptions)) {
                out.flags = (out.flags & ~f->clear) | f->set;
            } else if (auto prop = propagation_from_name(name)) {
                out.propagation = *prop;
            } else if (contains(kUnsupportedMountOptions, name)) {
                o.fail("mount option " + name + " is not supported by keel");
            } else {
                data.push_back(name);
                if (!first_data) first_data = o;
            }
        }
    }
    if (out.type == "bind") out.flags |= MS_BIND;
    if (out.bind()) {
        if (out.source.empty()) m.fail_member("source", "required for a bind mount");
        // Relative bind sources are relative to the bundle (runtime-spec, "Mounts").
        out.source = join_path(bundle_dir, out.source);
        // A bind mount takes no filesystem data, so an option that is not a flag would be
        // dropped: most likely a typo ("noexce").
        if (first_data)
            first_data->fail("unknown option " + json_quote(data[0]) + " for a bind mount");
    } else if (out.type.empty()) {
        m.fail_member("type", "required unless the mount is a bind mount");
    } else if (out.type == "proc" && out.destination != "/proc") {
        // The masked and read-only paths are /proc's: a procfs anywhere else would give the
        // container a writable /sys/kernel and sysrq-trigger of its own.
        m.fail_member("destination",
                      "a proc mount goes on /proc only, got " + json_quote(out.destination));
    }
    out.data = join(data, ",");
    return out;
}

void parse_mounts(const Node& list, const std::string& bundle_dir, ContainerSpec& spec) {
    for (const auto& m : list.items())
        spec.mounts.push_back(parse_mount(m, bundle_dir));
}

void parse_namespaces(const Node& list, ContainerSpec& spec) {
    for (const auto& n : list.items()) {
        n.check_fields({"type", "path"});
        Node type = n.need("type");
        std::string name = type.str();
        // ns_from_name also takes the /proc names ("net", "mnt"); config.json uses only the
        // spec's, as runc does.
        auto t = ns_from_name(name);
        if (t && name != ns_name(*t))
            type.fail("unknown namespace type " + json_quote(name) + " (did you mean " +
                      ns_name(*t) + "?)");
        if (!t) {
            std::vector<std::string> known;
            for (auto k : {NsType::mount, NsType::pid, NsType::uts, NsType::ipc, NsType::net,
                           NsType::cgroup, NsType::user, NsType::time})
                known.push_back(ns_name(k));
            std::string guess = closest(name, known);
            type.fail("unknown namespace type " + json_quote(name) +
                      (guess.empty() ? "" : " (did you mean " + guess + "?)"));
        }
        if (spec.has_namespace(*t)) type.fail("duplicate namespace " + name);
        Namespace ns{*t, {}};
        if (auto p = n.get("path")) ns.path = p->absolute_path();
        spec.namespaces.push_back(ns);
    }
}

std::vector<IdMap> parse_id_maps(const Node& list) {
    std::vector<IdMap> out;
    for (const auto& m : list.items()) {
        m.check_fields({"containerID", "hostID", "size"});
        IdMap map{m.need("containerID").number<uint32_t>(), m.need("hostID").number<uint32_t>(),
                  m.need("size").number<uint32_t>()};
        if (map.count == 0) m.need("size").fail("must be at least 1");
        out.push_back(map);
    }
    return out;
}

Device parse_device(const Node& d) {
    d.check_fields({"path", "type", "major", "minor", "fileMode", "uid", "gid"});
    Device out;
    out.path = d.need("path").absolute_path();
    Node type = d.need("type");
    std::string t = type.str();
    // "u" (unbuffered) is a character device to mknod; FIFOs ("p") are not device nodes.
    if (t == "p") type.fail("FIFO devices are not supported by keel");
    if (t != "c" && t != "u" && t != "b")
        type.fail("unknown device type " + json_quote(t) + " (expected c, b, u or p)");
    out.type = t == "b" ? 'b' : 'c';
    out.major = d.need("major").number<uint32_t>();
    out.minor = d.need("minor").number<uint32_t>();
    if (auto m = d.get("fileMode")) {
        out.mode = m->number<mode_t>();
        if (out.mode > 07777) m->fail(fmt::format("{:#o} is not a permission mode", out.mode));
    }
    if (auto u = d.get("uid")) out.uid = u->number<uid_t>();
    if (auto g = d.get("gid")) out.gid = g->number<gid_t>();
    return out;
}

std::string parse_cgroups_path(const Node& n) {
    std::string p = n.str();
    if (p.find(':') != std::string::npos)
        n.fail("systemd-style \"slice:prefix:name\" is not supported by keel; give a path below "
               "the cgroup2 root");
    p.erase(0, p.find_first_not_of('/'));
    for (const auto& part : split(p, '/'))
        if (part == "..") n.fail("must not leave the cgroup2 root (\"..\")");
    return p;
}

void parse_memory(const Node& m, Resources& r) {
    m.check_fields({"limit", "swap"}, {"reservation", "kernel", "kernelTCP", "swappiness",
                                       "disableOOMKiller", "useHierarchy", "checkBeforeUpdate"});
    // As in runc, 0 means "not set" and -1 "unlimited", which is what a new cgroup has anyway.
    if (auto l = m.get("limit")) {
        auto v = l->number<int64_t>();
        if (v < -1) l->fail(fmt::format("{} is not a limit (-1 means unlimited)", v));
        if (v > 0) r.memory_max = v;
    }
    if (auto s = m.get("swap")) {
        auto v = s->number<int64_t>();
        if (v < -1) s->fail(fmt::format("{} is not a limit (-1 means unlimited)", v));
        // OCI's swap is memory+swap; cgroup.cc derives memory.swap.max from both.
        if (v > 0 && !r.memory_max) s->fail("needs memory.limit (swap is memory+swap)");
        if (v > 0 && v < *r.memory_max)
            s->fail(fmt::format("memory+swap {} is below memory.limit {}", v, *r.memory_max));
        if (v != 0) r.memory_swap = v;
    }
}

// cgroup v1 cpu.shares (2..262144, default 1024) onto v2 cpu.weight (1..10000, default 100),
// the linear map runc and crun use, so the same config weighs the same under every runtime.
uint64_t shares_to_weight(uint64_t shares) {
    return 1 + ((shares - 2) * 9999) / 262142;
}

void parse_cpu(const Node& c, Resources& r) {
    c.check_fields({"shares", "quota", "period"},
                   {"realtimeRuntime", "realtimePeriod", "cpus", "mems", "idle", "burst"});
    if (auto s = c.get("shares")) {
        auto shares = s->number<uint64_t>();
        if (shares != 0 && (shares < 2 || shares > 262144))
            s->fail(fmt::format("{} is outside 2..262144", shares));
        if (shares != 0) r.cpu_weight = shares_to_weight(shares);
    }
    if (auto q = c.get("quota")) {
        auto quota = q->number<int64_t>();
        if (quota < -1) q->fail(fmt::format("{} is not a quota (-1 means unlimited)", quota));
        if (quota != 0) r.cpu_quota = quota;
    }
    if (auto p = c.get("period")) {
        auto period = p->number<uint64_t>();
        if (period != 0) r.cpu_period = period;
        // cpu.max holds both; a period alone is written as "max <period>".
        if (period != 0 && !r.cpu_quota) r.cpu_quota = -1;
    }
}

// The device cgroup rules, in order; device_filter.h says what the runtime adds around them
// (deny-all first, its defaults and linux.devices after) and how they decide.
std::vector<DeviceRule> parse_device_rules(const Node& list) {
    std::vector<DeviceRule> rules;
    for (const auto& n : list.items()) {
        n.check_fields({"allow", "type", "major", "minor", "access"});
        DeviceRule rule;
        rule.allow = n.need("allow").boolean();
        if (auto t = n.get("type")) {
            std::string type = t->str();
            if (type != "a" && type != "c" && type != "b")
                t->fail("unknown device type " + json_quote(type) + " (expected a, c or b)");
            rule.type = type[0];
        }
        // Absent or -1: any.
        for (auto [key, field] : {std::pair{"major", &rule.major}, std::pair{"minor", &rule.minor}})
            if (auto v = n.get(key)) {
                *field = v->number<int64_t>();
                if (*field < -1 || *field > int64_t{std::numeric_limits<uint32_t>::max()})
                    v->fail(fmt::format("{} is not a device number (-1 means any)", *field));
            }
        std::string access = "rwm";
        if (auto a = n.get("access")) access = a->str();
        if (access.empty() || access.find_first_not_of("rwm") != std::string::npos)
            n.need("access").fail("expected letters from \"rwm\", got " + json_quote(access));
        rule.access = (access.find('r') != std::string::npos ? DeviceRule::read : 0) |
                      (access.find('w') != std::string::npos ? DeviceRule::write : 0) |
                      (access.find('m') != std::string::npos ? DeviceRule::mknod : 0);
        rules.push_back(rule);
    }
    return rules;
}

void parse_resources(const Node& r, ContainerSpec& spec) {
    r.check_fields({"memory", "pids", "cpu", "devices"},
                   {"hugepageLimits", "blockIO", "network", "rdma", "unified"});
    if (auto m = r.get("memory")) parse_memory(*m, spec.resources);
    if (auto p = r.get("pids")) {
        p->check_fields({"limit"});
        // 0 and -1 both mean unlimited; cgroup.cc writes "max" for them.
        spec.resources.pids_max = p->need("limit").number<int64_t>();
    }
    if (auto c = r.get("cpu")) parse_cpu(*c, spec.resources);
    if (auto d = r.get("devices")) spec.device_rules = parse_device_rules(*d);
}

std::string seccomp_action(const Node& n) {
    std::string a = n.str();
    if (a == "SCMP_ACT_NOTIFY")
        n.fail("SCMP_ACT_NOTIFY is not supported by keel (no seccomp listener)");
    if (!contains(kSeccompActions, a)) n.fail("unknown action " + a);
    return a;
}

// errnoRet is the return value of SCMP_ACT_ERRNO and the message of SCMP_ACT_TRACE; with any
// other action it would be dropped.
std::optional<int> seccomp_errno(const Node& parent, const char* key, const std::string& action) {
    auto n = parent.get(key);
    if (!n) return std::nullopt;
    auto v = n->number<uint16_t>();
    if (action != "SCMP_ACT_ERRNO" && action != "SCMP_ACT_TRACE")
        n->fail("only valid with SCMP_ACT_ERRNO or SCMP_ACT_TRACE, not " + action);
    return v;
}

SeccompRule parse_seccomp_rule(const Node& s) {
    s.check_fields({"names", "action", "errnoRet", "args"});
    SeccompRule rule;
    Node names = s.need("names");
    rule.names = names.strings();
    if (rule.names.empty()) names.fail("must not be empty");
    rule.action = seccomp_action(s.need("action"));
    rule.errno_ret = seccomp_errno(s, "errnoRet", rule.action);
    if (auto args = s.get("args")) {
        for (const auto& a : args->items()) {
            a.check_fields({"index", "value", "valueTwo", "op"});
            SeccompArg arg;
            Node index = a.need("index");
            arg.index = index.number<unsigned>();
            if (arg.index > 5)
                index.fail(fmt::format("{} is not a syscall argument (0..5)", arg.index));
            arg.value = a.need("value").number<uint64_t>();
            if (auto v2 = a.get("valueTwo")) arg.value_two = v2->number<uint64_t>();
            Node op = a.need("op");
            arg.op = op.str();
            if (!contains(kSeccompOperators, arg.op)) op.fail("unknown operator " + arg.op);
            rule.args.push_back(arg);
        }
    }
    return rule;
}

SeccompProfile parse_seccomp(const Node& s) {
    s.check_fields({"defaultAction", "defaultErrnoRet", "architectures", "flags", "syscalls"},
                   {"listenerPath", "listenerMetadata"});
    SeccompProfile p;
    p.default_action = seccomp_action(s.need("defaultAction"));
    p.default_errno = seccomp_errno(s, "defaultErrnoRet", p.default_action);
    if (auto a = s.get("architectures")) {
        p.architectures = a->strings();
        for (size_t i = 0; i < p.architectures.size(); ++i)
            if (!starts_with(p.architectures[i], "SCMP_ARCH_"))
                a->items()[i].fail("unknown architecture " + p.architectures[i]);
    }
    if (auto f = s.get("flags")) {
        p.flags = f->strings();
        for (size_t i = 0; i < p.flags.size(); ++i)
            if (!contains(kSeccompFlags, p.flags[i]))
                f->items()[i].fail("unknown flag " + p.flags[i]);
    }
    if (auto list = s.get("syscalls"))
        for (const auto& n : list->items())
            p.syscalls.push_back(parse_seccomp_rule(n));
    return p;
}

std::vector<std::string> parse_paths(const Node& list) {
    std::vector<std::string> out;
    for (const auto& n : list.items())
        out.push_back(n.absolute_path());
    return out;
}

void parse_linux(const Node& l, ContainerSpec& spec) {
    l.check_fields(
        {"namespaces", "uidMappings", "gidMappings", "devices", "cgroupsPath", "resources",
         "sysctl", "maskedPaths", "readonlyPaths", "rootfsPropagation", "seccomp"},
        {"mountLabel", "intelRdt", "personality", "timeOffsets", "memoryPolicy", "netDevices"});
    if (auto n = l.get("namespaces")) parse_namespaces(*n, spec);
    if (auto m = l.get("uidMappings")) spec.uid_maps = parse_id_maps(*m);
    if (auto m = l.get("gidMappings")) spec.gid_maps = parse_id_maps(*m);
    if (auto d = l.get("devices"))
        for (const auto& n : d->items())
            spec.devices.push_back(parse_device(n));
    if (auto c = l.get("cgroupsPath")) spec.cgroup_path = parse_cgroups_path(*c);
    if (auto r = l.get("resources")) parse_resources(*r, spec);
    if (auto s = l.get("sysctl"))
        for (const auto& [key, value] : s->members()) {
            if (key.empty()) value.fail("empty sysctl name");
            // Refused here, by name, before anything runs (namespaces are parsed above).
            if (auto why = sysctl::refusal(key, spec)) value.fail(json_quote(key) + ": " + *why);
            spec.sysctl[key] = value.str();
        }
    if (auto m = l.get("maskedPaths")) spec.masked_paths = parse_paths(*m);
    if (auto r = l.get("readonlyPaths")) spec.readonly_paths = parse_paths(*r);
    if (auto p = l.get("rootfsPropagation")) {
        auto flags = propagation_from_name(p->str());
        if (!flags) p->fail("unknown propagation " + json_quote(p->str()));
        spec.rootfs_propagation = *flags;
    }
    if (auto s = l.get("seccomp")) spec.seccomp = parse_seccomp(*s);
}

// Rules that span sections. Each names the field to change.
void check_consistency(const ContainerSpec& spec) {
    auto fail = [](const std::string& path, const std::string& why) {
        throw FieldError{path + ": " + why};
    };
    // The root, mounts, masked paths and the rest are set up inside the container's mount
    // namespace; without one they would be done to the host, or not at all.
    if (!spec.has_namespace(NsType::mount))
        fail("linux.namespaces", "a mount namespace is required (keel sets up the root inside it)");
    // Without its own UTS namespace the container would rename the host.
    if (!spec.has_namespace(NsType::uts)) {
        if (!spec.hostname.empty()) fail("hostname", "needs a uts namespace in linux.namespaces");
        if (!spec.domainname.empty())
            fail("domainname", "needs a uts namespace in linux.namespaces");
    }
    const Namespace* user = spec.find_namespace(NsType::user);
    if (user && user->path.empty()) {
        if (spec.uid_maps.empty()) fail("linux.uidMappings", "required with a new user namespace");
        if (spec.gid_maps.empty()) fail("linux.gidMappings", "required with a new user namespace");
    }
    if (!user || !user->path.empty()) {
        const char* why = user ? "not allowed when joining a user namespace (it has its maps)"
                               : "needs a user namespace in linux.namespaces";
        if (!spec.uid_maps.empty()) fail("linux.uidMappings", why);
        if (!spec.gid_maps.empty()) fail("linux.gidMappings", why);
    }
}

ContainerSpec from_document(const json& doc, const std::string& bundle_dir) {
    Node top(doc, "");
    top.check_fields({"ociVersion", "process", "root", "hostname", "domainname", "mounts", "linux",
                      "annotations"},
                     {"hooks", "solaris", "windows", "vm", "zos"});
    ContainerSpec spec;
    check_version(top.need("ociVersion"));
    parse_process(top.need("process"), spec);
    parse_root(top.need("root"), bundle_dir, spec);
    if (auto h = top.get("hostname")) spec.hostname = h->str();
    if (auto d = top.get("domainname")) spec.domainname = d->str();
    if (auto m = top.get("mounts")) parse_mounts(*m, bundle_dir, spec);
    if (auto l = top.get("linux")) parse_linux(*l, spec);
    // Free-form by the spec, for tools above the runtime; checked only for shape.
    if (auto a = top.get("annotations"))
        for (const auto& [key, value] : a->members())
            (void)value.str();
    check_consistency(spec);
    return spec;
}

Result<json> parse_json(const std::string& text, const std::string& origin) {
    try {
        return json::parse(text);
    } catch (const json::parse_error& e) {
        // what() reads "[json.exception.parse_error.101] parse error at line 1, column 2: <why>".
        // e.byte counts from 1, like cmp(1); at the end of the input it is one past the end.
        std::string why = e.what();
        if (auto at = why.find(": "); at != std::string::npos) why.erase(0, at + 2);
        return plain_error(fmt::format("{}: invalid JSON at byte {}: {}", origin, e.byte, why));
    } catch (const json::exception& e) {
        // A number no double holds (1e999) is out_of_range, not parse_error, and has no byte.
        std::string why = e.what();
        if (auto at = why.find("] "); at != std::string::npos) why.erase(0, at + 2);
        return plain_error(fmt::format("{}: invalid JSON: {}", origin, why));
    }
}

Result<ContainerSpec> parse(const std::string& text, const std::string& bundle_dir,
                            const std::string& origin) {
    auto doc = parse_json(text, origin);
    if (!doc) return doc.error();
    try {
        return from_document(*doc, bundle_dir);
    } catch (const FieldError& e) {
        return plain_error(e.message);
    } catch (const json::exception& e) {
        // Every access is type-checked first; this is a guard, not a path.
        return plain_error(origin + ": " + e.what());
    }
}

} // namespace

Result<ContainerSpec> parse_config(const std::string& json_text, const std::string& bundle_dir) {
    return parse(json_text, bundle_dir, "config.json");
}

Result<ContainerSpec> load_bundle(const std::string& bundle_dir) {
    std::string path = bundle_dir + "/config.json";
    std::string text;
    if (!read_file(path.c_str(), text)) return sys_error("read " + path);
    auto spec = parse(text, bundle_dir, path);
    if (!spec && spec.error().message.rfind(path, 0) != 0) return wrap(path, spec.error());
    return spec;
}

int capability_from_name(const std::string& name) {
    for (const auto& [cap, n] : kCapabilities)
        if (name == n) return cap;
    return -1;
}

std::string capability_name(int cap) {
    for (const auto& [c, n] : kCapabilities)
        if (c == cap) return n;
    return {};
}

// --- the default document -----------------------------------------------------------------

std::string default_config_json(bool rootless) {
    using ojson = nlohmann::ordered_json;
    const ojson caps = {"CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"};
    // The list is runtime/defaults' (shared with keeld's services, with the differences
    // recorded there).
    ojson mounts = ojson::array();
    for (const auto& m : defaults::oci_mounts(rootless)) {
        ojson entry = {{"destination", m.destination}, {"type", m.type}, {"source", m.source}};
        if (auto options = defaults::oci_options(m); !options.empty()) entry["options"] = options;
        mounts.push_back(std::move(entry));
    }

    // runc 1.1 lists no cgroup namespace; without one, the cgroup2 mount above would show the
    // host's whole hierarchy, so keel adds it, as newer runc versions do.
    ojson namespaces = ojson::array();
    for (const char* t : {"pid", "network", "ipc", "uts", "mount", "cgroup", "user"}) {
        bool user = std::strcmp(t, "user") == 0, net = std::strcmp(t, "network") == 0;
        // Rootless: a new network namespace would have no usable interface, and a user
        // namespace is what makes the rest possible.
        if ((user && !rootless) || (net && rootless)) continue;
        namespaces.push_back({{"type", t}});
    }

    ojson linux_section;
    if (rootless) {
        auto self = [](unsigned id) {
            return ojson::array({{{"containerID", 0}, {"hostID", id}, {"size", 1}}});
        };
        linux_section["uidMappings"] = self(::geteuid());
        linux_section["gidMappings"] = self(::getegid());
    } else {
        linux_section["resources"] = {
            {"devices", ojson::array({{{"allow", false}, {"access", "rwm"}}})}};
    }
    linux_section["namespaces"] = namespaces;
    linux_section["maskedPaths"] = defaults::masked_paths();
    linux_section["readonlyPaths"] = defaults::readonly_paths();

    ojson doc;
    doc["ociVersion"] = "1.0.2-dev";
    doc["process"] = {
        {"terminal", true},
        {"user", {{"uid", 0}, {"gid", 0}}},
        {"args", {"sh"}},
        {"env",
         {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"}},
        {"cwd", "/"},
        {"capabilities",
         {{"bounding", caps}, {"effective", caps}, {"permitted", caps}, {"ambient", caps}}},
        {"rlimits", ojson::array({{{"type", "RLIMIT_NOFILE"}, {"hard", 1024}, {"soft", 1024}}})},
        {"noNewPrivileges", true},
    };
    doc["root"] = {{"path", "rootfs"}, {"readonly", true}};
    doc["hostname"] = "keel";
    doc["mounts"] = mounts;
    doc["linux"] = linux_section;
    return doc.dump(1, '\t') + "\n";
}

} // namespace keel::runtime::oci
