// `keel audit`, keeld's half: the facts, read from the running system. The system instance
// reports the host and the system services, the user instance its workloads. A running
// container is judged by what the kernel says of its first process (/proc/PID/status, its
// namespaces, its root mount, its cgroup), not by what its definition asked for.
#include <dirent.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cstring>

#include <fmt/format.h>

#include "audit/audit.h"
#include "common/quota.h"
#include "common/strings.h"
#include "config/config.h"
#include "config/kernel_cmdline.h"
#include "config/modules_list.h"
#include "config/sysctl_profile.h"
#include "keeld/daemon.h"
#include "runtime/namespaces.h"
#include "runtime/oci.h"

namespace keel::keeld {

using nlohmann::json;

namespace {

std::string slurp(const std::string& path) {
    std::string s;
    return read_file(path.c_str(), s) ? s : std::string();
}

// "Key:\tvalue" from /proc/PID/status.
std::string status_field(const std::string& status, const char* key) {
    auto at = status.find(std::string("\n") + key + ":");
    if (at == std::string::npos) return {};
    at += std::strlen(key) + 2;
    auto end = status.find('\n', at);
    return std::string(trim(status.substr(at, end - at)));
}

std::string ns_id(const std::string& pid, const char* ns) {
    char buf[64] = {};
    ssize_t n = ::readlink(("/proc/" + pid + "/ns/" + ns).c_str(), buf, sizeof buf - 1);
    return n > 0 ? std::string(buf, size_t(n)) : std::string();
}

std::optional<int64_t> cgroup_limit(const std::string& dir, const char* file) {
    if (dir.empty()) return std::nullopt;
    std::string v = std::string(trim(slurp(dir + "/" + file)));
    if (v.empty() || v == "max") return std::nullopt;
    return std::strtoll(v.c_str(), nullptr, 10);
}

const char* restart_name(service::RestartPolicy p) {
    switch (p) {
    case service::RestartPolicy::no:
        return "no";
    case service::RestartPolicy::on_failure:
        return "on-failure";
    case service::RestartPolicy::always:
        return "always";
    }
    return "?";
}

audit::ContainerFacts facts_of(const Service& s, bool workload) {
    const auto& sp = *s.spec;
    audit::ContainerFacts c;
    c.name = s.name;
    c.workload = workload;
    c.file = workload ? "keel run" : sp.file;
    c.privileged = sp.privileged;
    c.restart = restart_name(sp.restart);
    c.restart_limit = sp.restart_limit;
    for (const auto& m : sp.mounts)
        c.mounts.push_back({m.source, m.destination, m.read_only, m.type == "bind"});
    // The definition, for a container that is not running; the kernel's word replaces it below.
    for (int cap : sp.capabilities)
        c.capabilities.push_back(runtime::oci::capability_name(cap));
    c.own_user_namespace = sp.user_namespace.enabled;
    if (sp.host.net) c.shared_namespaces.insert("net");
    if (sp.host.pid) c.shared_namespaces.insert("pid");
    if (sp.host.ipc) c.shared_namespaces.insert("ipc");
    if (sp.host.uts) c.shared_namespaces.insert("uts");
    c.seccomp = c.no_new_privs = !sp.privileged;
    c.read_only_root = sp.read_only_root;
    c.memory_max = sp.resources.memory_max;
    c.pids_max = sp.resources.pids_max;
    if (!s.has_container) return c;

    c.running = true;
    std::string pid = std::to_string(s.container.pid());
    std::string st = "\n" + slurp("/proc/" + pid + "/status");
    if (st.size() > 1) {
        uint64_t eff = std::strtoull(status_field(st, "CapEff").c_str(), nullptr, 16);
        c.capabilities.clear();
        for (int bit = 0; bit < 64; bit++)
            if (eff & (uint64_t(1) << bit))
                c.capabilities.push_back(runtime::oci::capability_name(bit));
        c.no_new_privs = status_field(st, "NoNewPrivs") == "1";
        c.seccomp = status_field(st, "Seccomp") == "2";
        auto uid = split(status_field(st, "Uid"), '\t');
        if (!uid.empty()) c.host_uid = uid[0];
    }
    c.shared_namespaces.clear();
    for (const char* ns : {"net", "pid", "ipc", "uts"}) {
        std::string theirs = ns_id(pid, ns);
        if (!theirs.empty() && theirs == ns_id("self", ns)) c.shared_namespaces.insert(ns);
    }
    std::string user = ns_id(pid, "user");
    if (!user.empty()) c.own_user_namespace = user != ns_id("self", "user");
    if (workload && runtime::in_child_user_namespace()) {
        // Workloads live in the user runtime's user namespace, which is not the host's: their
        // uids are the host's through its uid_map ("0 100000 65536").
        c.own_user_namespace = true;
        for (const auto& line : split(slurp("/proc/self/uid_map"), '\n')) {
            auto w = split(std::string(trim(line)), ' ');
            std::erase(w, "");
            if (w.size() != 3 || c.host_uid.empty()) continue;
            uint64_t inside = std::stoull(w[0]), outside = std::stoull(w[1]),
                     count = std::stoull(w[2]);
            uint64_t uid = std::stoull(c.host_uid);
            if (uid >= inside && uid < inside + count) {
                c.host_uid = std::to_string(outside + (uid - inside));
                break;
            }
        }
    }
    // Its root: the mount at / in its own mount table.
    std::string mi = slurp("/proc/" + pid + "/mountinfo");
    for (const auto& line : split(mi, '\n')) {
        auto f = split(line, ' ');
        if (f.size() > 5 && f[4] == "/") {
            auto opts = split(f[5], ',');
            c.read_only_root = std::find(opts.begin(), opts.end(), "ro") != opts.end();
        }
    }
    const std::string& cg = s.container.cgroup_path();
    if (!cg.empty() && ::access((cg + "/memory.max").c_str(), R_OK) == 0) {
        c.memory_max = cgroup_limit(cg, "memory.max");
        c.pids_max = cgroup_limit(cg, "pids.max");
    }
    return c;
}

// Socket inode -> "service NAME" / "workload NAME" / "pid N (comm)", from every process's fds.
std::map<std::string, std::pair<std::string, std::string>> socket_owners() {
    std::map<std::string, std::pair<std::string, std::string>> owners; // inode -> (owner, service)
    DIR* proc = ::opendir("/proc");
    if (!proc) return owners;
    while (dirent* e = ::readdir(proc)) {
        std::string pid = e->d_name;
        if (pid.find_first_not_of("0123456789") != std::string::npos) continue;
        std::string fds = "/proc/" + pid + "/fd";
        DIR* d = ::opendir(fds.c_str());
        if (!d) continue;
        std::vector<std::string> inodes;
        while (dirent* fe = ::readdir(d)) {
            char buf[64] = {};
            ssize_t n = ::readlinkat(::dirfd(d), fe->d_name, buf, sizeof buf - 1);
            std::string link(buf, n > 0 ? size_t(n) : 0);
            if (starts_with(link, "socket:[")) inodes.push_back(link.substr(8, link.size() - 9));
        }
        ::closedir(d);
        if (inodes.empty()) continue;
        // cgroup v2: "0::/keel/system/NAME[/workloads/W...]"
        std::string cg = std::string(trim(slurp("/proc/" + pid + "/cgroup")));
        std::string owner, service;
        auto at = cg.find("/keel/system/");
        if (at != std::string::npos) {
            auto rest = split(cg.substr(at + 13), '/');
            service = rest.empty() ? "" : rest[0];
            auto w = std::find(rest.begin(), rest.end(), "workloads");
            owner = (w != rest.end() && w + 1 != rest.end()) ? "workload " + *(w + 1)
                                                             : "service " + service;
        } else {
            owner = "pid " + pid + " (" + std::string(trim(slurp("/proc/" + pid + "/comm"))) + ")";
        }
        for (const auto& i : inodes)
            owners.emplace(i, std::make_pair(owner, service));
    }
    ::closedir(proc);
    return owners;
}

std::string hex_address(const std::string& hex, bool v6) {
    // /proc/net/tcp: the address in network order, printed as host-order 32-bit words.
    std::string out;
    if (!v6) {
        uint32_t a = uint32_t(std::strtoul(hex.c_str(), nullptr, 16));
        return fmt::format("{}.{}.{}.{}", a & 0xff, (a >> 8) & 0xff, (a >> 16) & 0xff, a >> 24);
    }
    bool zero = hex.find_first_not_of('0') == std::string::npos;
    return zero ? "[::]" : "[" + hex + "]";
}

} // namespace

json Daemon::handle_audit() {
    std::vector<audit::Check> checks;
    if (cfg_.instance == "system") {
        auto host = audit::host_checks(host_facts());
        checks.insert(checks.end(), host.begin(), host.end());
    }
    for (const auto& name : order_) {
        const Service* s = find(name);
        if (!s || !s->spec || s->workload) continue;
        // Only what runs or would run: a disabled service is not part of this host's surface.
        if (!s->workload && !s->enabled && !s->has_container) continue;
        auto c = audit::container_checks(facts_of(*s, cfg_.instance == "user"));
        checks.insert(checks.end(), c.begin(), c.end());
    }
    for (const auto& [name, s] : services_) {
        if (!s.workload || !s.spec) continue;
        auto c = audit::container_checks(facts_of(s, true));
        checks.insert(checks.end(), c.begin(), c.end());
    }
    json out = json::array();
    for (const auto& c : checks)
        out.push_back(audit::to_json(c));
    return {{"ok", true}, {"checks", out}};
}

audit::HostFacts Daemon::host_facts() {
    audit::HostFacts f;
    const std::string etc = "/etc/keel";
    if (auto p = config::sysctl::parse_profile(slurp(etc + "/sysctl.yml"), etc + "/sysctl.yml"))
        f.sysctl_profile = *p;
    std::vector<std::string> keys;
    for (const auto& [k, v] : f.sysctl_profile)
        keys.push_back(k);
    keys.push_back("kernel.modules_disabled");
    keys.push_back("kernel.kexec_load_disabled");
    for (const auto& k : keys) {
        std::string v;
        if (read_file(config::sysctl::key_path(k).c_str(), v))
            f.sysctl_actual[k] = v;
        else
            f.sysctl_actual[k] = std::nullopt;
    }
    f.cmdline = slurp("/proc/cmdline");
    if (auto k = config::parse_kernel_cmdline(slurp(etc + "/cmdline.yml"), etc + "/cmdline.yml")) {
        for (const auto& [word, why] : k->hardening)
            f.hardening_params.push_back(word);
        f.weakening_params = k->weakening;
    } else {
        f.cmdline_policy_error = k.error().str();
    }
    for (const auto& line : split(slurp("/proc/modules"), '\n'))
        if (!line.empty()) f.loaded_modules.push_back(line.substr(0, line.find(' ')));
    if (auto allow =
            config::modules::parse_allow_list(slurp(etc + "/modules.yml"), etc + "/modules.yml")) {
        utsname u{};
        ::uname(&u);
        std::string dir = std::string("/lib/modules/") + u.release;
        auto table = config::modules::parse_modules_dep(slurp(dir + "/modules.dep"));
        std::vector<std::string> wanted, builtin, missing;
        for (const auto& r : allow->modules)
            wanted.push_back(r.name);
        for (const auto& line : split(slurp(dir + "/modules.builtin"), '\n'))
            if (!line.empty()) builtin.push_back(config::modules::module_name(line));
        for (const auto& m : config::modules::load_order(table, wanted, builtin, missing))
            f.allowed_modules.insert(m);
    }
    if (auto lock = config::get(config_, "modules.lock"))
        f.modules_lock_wanted = config::to_text(*lock) != "false";
    if (::access("/sys/kernel/security/lockdown", R_OK) == 0)
        f.lockdown = slurp("/sys/kernel/security/lockdown");
    f.mountinfo = slurp("/proc/self/mountinfo");
    for (const auto& line : split(f.mountinfo, '\n'))
        if (line.find(" /var/lib/keel ") != std::string::npos &&
            line.find(" - tmpfs ") != std::string::npos)
            f.state_persistent = false;
    auto q = quota::usage(cfg_.ctx.state_dir + "/user");
    f.user_state_bounded = q.enforced;
    f.user_state_detail =
        q.enforced ? fmt::format("/var/lib/keel/user: {} of {} MiB, {} of {} inodes", q.bytes >> 20,
                                 q.bytes_limit >> 20, q.inodes, q.inodes_limit)
                   : q.why;

    auto owners = socket_owners();
    for (const char* proto : {"tcp", "tcp6", "udp", "udp6"}) {
        bool tcp = proto[0] == 't', v6 = std::strlen(proto) == 4;
        auto lines = split(slurp(std::string("/proc/net/") + proto), '\n');
        for (size_t i = 1; i < lines.size(); i++) {
            auto w = split(std::string(trim(lines[i])), ' ');
            std::erase(w, "");
            if (w.size() < 10) continue;
            // tcp: LISTEN (0A); udp: bound and unconnected (07, no remote port).
            if (tcp ? w[3] != "0A" : (w[3] != "07" || !std::string_view(w[2]).ends_with(":0000")))
                continue;
            auto colon = w[1].find(':');
            audit::Listener l;
            l.proto = proto;
            l.address = hex_address(w[1].substr(0, colon), v6);
            l.port = int(std::strtol(w[1].substr(colon + 1).c_str(), nullptr, 16));
            auto o = owners.find(w[9]);
            l.owner = o == owners.end() ? "owner unknown" : o->second.first;
            if (o != owners.end() && !o->second.second.empty()) {
                const Service* s = find(o->second.second);
                l.allowed = s && s->enabled;
            }
            f.listeners.push_back(l);
        }
    }

    if (const Service* ssh = find("sshd");
        ssh && ssh->spec && (ssh->enabled || ssh->has_container)) {
        f.sshd_enabled = true;
        std::string dir = starts_with(ssh->spec->image, "/")
                              ? ssh->spec->image
                              : cfg_.ctx.images_dir + "/" + ssh->spec->image;
        std::string text;
        if (read_file_in_root(dir, "/etc/ssh/sshd_config", text)) f.sshd_config = text;
    }

    // Accounts: the host's and every service image's.
    std::vector<std::string> roots = {""};
    if (DIR* d = ::opendir(cfg_.ctx.images_dir.c_str())) {
        while (dirent* e = ::readdir(d))
            if (e->d_name[0] != '.') roots.push_back(cfg_.ctx.images_dir + "/" + e->d_name);
        ::closedir(d);
    }
    for (const auto& root : roots)
        for (const char* file : {"/etc/passwd", "/etc/shadow"}) {
            // An image's files are data: read inside its root, regular files, bounded.
            std::string path = root + file, text;
            if (root.empty())
                text = slurp(path);
            else if (!read_file_in_root(root, file, text))
                text.clear();
            for (const auto& line : split(text, '\n')) {
                auto fields = split(line, ':');
                if (fields.size() >= 2 && !fields[0].empty())
                    f.accounts.push_back({path, fields[0], fields[1]});
            }
        }

    auto sock = [](const std::string& path, unsigned uid, unsigned gid, unsigned mode,
                   const std::string& expect) {
        audit::SocketFile s;
        s.path = path;
        s.expect = expect;
        s.want_uid = uid;
        s.want_gid = gid;
        s.want_mode = mode;
        struct stat st {};
        if (::stat(path.c_str(), &st) == 0) {
            s.exists = true;
            s.uid = st.st_uid;
            s.gid = st.st_gid;
            s.mode = st.st_mode & 07777;
        }
        return s;
    };
    f.sockets.push_back(sock(cfg_.socket, 0, unsigned(admin_gid_), 0660, "root:keel 0660"));
    // The user runtime's socket (0666 inside its user namespace, where host uids are nobody)
    // is reached through its directory, which its root owns and nobody else may write; the
    // directory is reached only where /run/keel is bound: the host's root, the console, sshd.
    if (auto id = config::get(config_, "user_runtime.host_id")) {
        unsigned host_id = unsigned(std::stoul(config::to_text(*id)));
        f.sockets.push_back(
            sock(cfg_.ctx.run_dir + "/user", host_id, host_id, 0755,
                 fmt::format("{}:{}, at most 0755 (the user runtime's root)", host_id, host_id)));
    }
    if (auto p = config::get(config_, "allow_privileged"))
        f.allow_privileged = config::to_text(*p) == "true";
    return f;
}

} // namespace keel::keeld
