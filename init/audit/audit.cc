#include "audit/audit.h"

#include <algorithm>
#include <sstream>

#include <fmt/format.h>

#include "common/strings.h"
#include "runtime/capabilities.h"

namespace keel::audit {

const char* level_name(Level l) {
    switch (l) {
    case Level::pass:
        return "PASS";
    case Level::warn:
        return "WARN";
    case Level::info:
        return "INFO";
    }
    return "?";
}

nlohmann::json to_json(const Check& c) {
    nlohmann::json j = {
        {"id", c.id}, {"section", c.section}, {"level", level_name(c.level)}, {"title", c.title}};
    if (!c.target.empty()) j["target"] = c.target;
    if (!c.detail.empty()) j["detail"] = c.detail;
    if (!c.fix.empty()) j["fix"] = c.fix;
    return j;
}

namespace {

// Capabilities that act on the whole host when held in its user namespace: a system service
// holding one is an escape waiting for a bug.
const std::set<std::string> kHostDangerous = {
    "CAP_SYS_ADMIN", "CAP_SYS_MODULE",      "CAP_SYS_RAWIO", "CAP_SYS_PTRACE",
    "CAP_SYS_BOOT",  "CAP_DAC_READ_SEARCH", "CAP_MAC_ADMIN", "CAP_MAC_OVERRIDE",
    "CAP_BPF",       "CAP_PERFMON",         "CAP_SYSLOG",    "CAP_LINUX_IMMUTABLE"};

struct Builder {
    std::vector<Check>& out;
    std::string section, target;
    Check& add(std::string id, Level level, std::string title, std::string detail = {},
               std::string fix = {}) {
        out.push_back({std::move(id), section, target, level, std::move(title), std::move(detail),
                       std::move(fix)});
        return out.back();
    }
};

std::vector<std::string> words(const std::string& s) {
    std::vector<std::string> w;
    std::istringstream in(s);
    for (std::string x; in >> x;)
        w.push_back(x);
    return w;
}

// The options of the mount on top at `path` in mountinfo, or nullopt when nothing is mounted
// there.
struct MountOpts {
    std::set<std::string> opts;
    std::string fstype;
};
std::optional<MountOpts> mount_at(const std::string& mountinfo, const std::string& path) {
    std::optional<MountOpts> found;
    std::istringstream in(mountinfo);
    for (std::string line; std::getline(in, line);) {
        auto f = words(line);
        if (f.size() < 10 || f[4] != path) continue;
        MountOpts m;
        for (const auto& o : split(f[5], ','))
            m.opts.insert(o);
        auto dash = std::find(f.begin() + 6, f.end(), "-");
        if (dash != f.end() && dash + 1 != f.end()) m.fstype = *(dash + 1);
        found = m; // the last one is on top
    }
    return found;
}

void mount_check(Builder& b, const std::string& id, const HostFacts& f, const std::string& path,
                 const std::vector<std::string>& want, const std::string& note = {}) {
    std::string title = path + " mounted " + join(want, ",");
    auto m = mount_at(f.mountinfo, path);
    if (!m) {
        b.add(id, Level::warn, title, "not a mount point",
              "keel-init mounts it at boot; something unmounted it");
        return;
    }
    std::vector<std::string> missing;
    for (const auto& o : want)
        if (!m->opts.count(o)) missing.push_back(o);
    std::string detail = m->fstype + (note.empty() ? "" : ", " + note);
    if (missing.empty())
        b.add(id, Level::pass, title, detail);
    else
        b.add(id, Level::warn, title, detail + "; without " + join(missing, ","),
              "keel-init mounts it so at boot; remount it: mount -o remount," + join(missing, ",") +
                  " " + path);
}

// sshd_config: the first value of each keyword wins, keywords are case-insensitive.
std::map<std::string, std::string> sshd_settings(const std::string& text) {
    std::map<std::string, std::string> out;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
        auto w = words(line);
        if (w.empty() || w[0][0] == '#') continue;
        std::string key = w[0];
        std::transform(key.begin(), key.end(), key.begin(), ::tolower);
        if (key == "match") break; // conditional blocks are not the global settings
        std::string value;
        for (size_t i = 1; i < w.size(); i++)
            value += (i > 1 ? " " : "") + w[i];
        out.emplace(key, value);
    }
    return out;
}

bool is_password_hash(const std::string& field) {
    // "x": see shadow; "*", "!", "!!", "!*": no password. Anything else is a hash (locked or not)
    // or empty (no password needed at all).
    if (field == "x" || field == "*" || field == "!" || field == "!!" || field == "!*")
        return false;
    return true;
}

std::string lower(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), ::tolower);
    return s;
}

} // namespace

std::vector<Check> host_checks(const HostFacts& f) {
    std::vector<Check> out;
    Builder b{out, "host", ""};
    const std::string profile_fix =
        "keel-init applies /etc/keel/sysctl.yml at boot (config/sysctl.yml in the source); "
        "find what changed it, or reboot";
    int n = 0;
    for (const auto& [key, want] : f.sysctl_profile) {
        std::string id = fmt::format("1.1.{}", ++n);
        auto it = f.sysctl_actual.find(key);
        std::string title = key + " = " + want;
        if (it == f.sysctl_actual.end() || !it->second)
            b.add(id, Level::info, title, "this kernel has no such setting");
        else if (trim(*it->second) == want)
            b.add(id, Level::pass, title);
        else
            b.add(id, Level::warn, title, "is " + std::string(trim(*it->second)), profile_fix);
    }

    auto cmd = words(f.cmdline);
    auto has_word = [&](const std::string& w) {
        return std::find(cmd.begin(), cmd.end(), w) != cmd.end();
    };
    n = 0;
    if (!f.cmdline_policy_error.empty())
        b.add("1.2.0", Level::warn, "kernel command line policy", f.cmdline_policy_error,
              "restore /etc/keel/cmdline.yml (config/cmdline.yml in the source)");
    for (const auto& p : f.hardening_params) {
        std::string id = fmt::format("1.2.{}", ++n);
        if (has_word(p))
            b.add(id, Level::pass, "kernel command line has " + p);
        else
            b.add(id, Level::warn, "kernel command line has " + p, "missing",
                  "boot with it: the image's cmdline file carries it (config/cmdline.yml, "
                  "/etc/keel/cmdline.yml)");
    }
    std::vector<std::string> weak;
    for (const auto& w : cmd)
        for (const auto& bad : f.weakening_params)
            if (w == bad || (bad.find('=') == std::string::npos && starts_with(w, bad + "=")))
                weak.push_back(w);
    if (weak.empty())
        b.add("1.3", Level::pass, "no weakening kernel parameters",
              "none of nokaslr, nopti, mitigations=off, ...");
    else
        b.add("1.3", Level::warn, "no weakening kernel parameters", "found: " + join(weak, " "),
              "remove them from the kernel command line (scripts/run --append, the boot loader)");

    auto sysctl_is = [&](const std::string& key, const char* want) {
        auto it = f.sysctl_actual.find(key);
        return it != f.sysctl_actual.end() && it->second && trim(*it->second) == want;
    };
    const std::string lock_fix =
        f.modules_lock_wanted
            ? "keel-init sets it after loading the allow-list; it cannot be unset: find out why it "
              "is not set (boot log, stage modules)"
            : "modules.lock is false: boot without keel.config.modules.lock=false";
    if (sysctl_is("kernel.modules_disabled", "1"))
        b.add("1.4", Level::pass, "module loading is disabled (kernel.modules_disabled = 1)");
    else
        b.add("1.4", Level::warn, "module loading is disabled (kernel.modules_disabled = 1)",
              "is 0", lock_fix);
    if (sysctl_is("kernel.kexec_load_disabled", "1"))
        b.add("1.5", Level::pass, "kexec is disabled (kernel.kexec_load_disabled = 1)");
    else
        b.add("1.5", Level::warn, "kexec is disabled (kernel.kexec_load_disabled = 1)", "is 0",
              lock_fix);

    std::vector<std::string> extra;
    for (const auto& m : f.loaded_modules)
        if (!f.allowed_modules.count(m)) extra.push_back(m);
    if (extra.empty())
        b.add("1.6", Level::pass, "loaded modules are the allow-list and its dependencies",
              fmt::format("{} loaded", f.loaded_modules.size()));
    else
        b.add("1.6", Level::warn, "loaded modules are the allow-list and its dependencies",
              "not on it: " + join(extra, " "),
              "keep modules.lock on (they cannot have come after the lock); add what you need to "
              "/etc/keel/modules.yml "
              "(config/modules.yml) and rebuild the image");

    if (!f.lockdown)
        b.add("1.7", Level::info, "kernel lockdown",
              "this kernel has no lockdown LSM (/sys/kernel/security/lockdown)");
    else {
        std::string l = std::string(trim(*f.lockdown));
        if (l.find("[integrity]") != std::string::npos ||
            l.find("[confidentiality]") != std::string::npos)
            b.add("1.7", Level::pass, "kernel lockdown", l);
        else
            b.add("1.7", Level::warn, "kernel lockdown", l, "boot with lockdown=integrity");
    }

    mount_check(b, "1.8", f, "/var/lib/keel", {"nosuid", "nodev"},
                f.state_persistent ? "the state partition"
                                   : "no state partition: nothing persists");
    mount_check(b, "1.9", f, "/tmp", {"nosuid", "nodev", "noexec"});
    mount_check(b, "1.10", f, "/run", {"nosuid", "nodev", "noexec"});
    mount_check(b, "1.11", f, "/dev/shm", {"nosuid", "nodev", "noexec"});

    std::vector<std::string> ok, bad;
    for (const auto& l : f.listeners) {
        std::string s = fmt::format("{} {}:{} ({})", l.proto, l.address, l.port, l.owner);
        (l.allowed ? ok : bad).push_back(s);
    }
    if (bad.empty())
        b.add("1.12", Level::pass, "no listening sockets but enabled services'",
              ok.empty() ? "none listening" : join(ok, ", "));
    else
        b.add("1.12", Level::warn, "no listening sockets but enabled services'",
              "also: " + join(bad, ", "), "stop what listens there, or run it as a service");

    if (!f.sshd_enabled)
        b.add("1.13", Level::pass, "sshd: key-only, no root login",
              "sshd is not enabled: no remote login");
    else if (!f.sshd_config)
        b.add("1.13", Level::warn, "sshd: key-only, no root login",
              "its sshd_config cannot be read", "rebuild the image");
    else {
        auto s = sshd_settings(*f.sshd_config);
        const std::vector<std::pair<std::string, std::string>> want = {
            {"PasswordAuthentication", "no"},
            {"KbdInteractiveAuthentication", "no"},
            {"PermitRootLogin", "no"},
            {"PermitEmptyPasswords", "no"},
            {"MaxAuthTries", "3"},
            {"X11Forwarding", "no"},
            {"AllowTcpForwarding", "no"},
            {"AllowUsers", "keel"}};
        n = 0;
        for (const auto& [key, value] : want) {
            auto it = s.find(lower(key));
            std::string id = fmt::format("1.13.{}", ++n), title = "sshd: " + key + " " + value;
            if (it != s.end() && lower(it->second) == value)
                b.add(id, Level::pass, title);
            else
                b.add(id, Level::warn, title,
                      it == s.end() ? "not set (OpenSSH's default applies)" : "is " + it->second,
                      "the sshd service's sshd_config (services/sshd/files/) must say so");
        }
    }

    std::vector<std::string> hashed;
    for (const auto& a : f.accounts)
        if (is_password_hash(a.password))
            hashed.push_back(a.name + (a.password.empty() ? " (empty password)" : "") + " in " +
                             a.file);
    if (hashed.empty())
        b.add("1.14", Level::pass, "no account has a password",
              fmt::format("{} accounts", f.accounts.size()));
    else
        b.add("1.14", Level::warn, "no account has a password", join(hashed, ", "),
              "Keel logs in by SSH key only: replace the field with * (rootfs/etc/shadow, the "
              "service image's)");

    n = 0;
    for (const auto& s : f.sockets) {
        std::string id = fmt::format("1.15.{}", ++n), title = s.path + " is " + s.expect;
        if (!s.exists) {
            b.add(id, Level::info, title, "not there (its runtime is not running)");
            continue;
        }
        std::string got = fmt::format("{}:{} {:04o}", s.uid, s.gid, s.mode);
        if (s.uid == s.want_uid && s.gid == s.want_gid && (s.mode & ~s.want_mode) == 0)
            b.add(id, Level::pass, title, got);
        else
            b.add(id, Level::warn, title, "is " + got,
                  "keeld sets it when it starts: restart it (keel service restart ...)");
    }

    if (!f.allow_privileged)
        b.add("1.16", Level::pass,
              "privileged containers are not allowed (allow_privileged: false)");
    else
        b.add("1.16", Level::warn,
              "privileged containers are not allowed (allow_privileged: false)",
              "allow_privileged is true", "keel config set allow_privileged false");

    const char* bound =
        "the user runtime's share of the state partition is bounded (blocks and inodes)";
    if (f.user_state_bounded)
        b.add("1.17", Level::pass, bound, f.user_state_detail);
    else if (!f.state_persistent)
        b.add("1.17", Level::info, bound, "no state partition (a tmpfs): " + f.user_state_detail);
    else
        b.add("1.17", Level::warn, bound, f.user_state_detail,
              "give the state filesystem project quotas (offline: tune2fs -O quota,project -Q "
              "prjquota DEVICE) and reboot");
    return out;
}

std::vector<Check> container_checks(const ContainerFacts& c) {
    std::vector<Check> out;
    Builder b{out, c.workload ? "workloads" : "system", c.name};
    auto fix = [&](const std::string& service_file, const std::string& run_option) {
        return c.workload ? run_option : service_file + " in " + c.file;
    };

    if (c.privileged)
        b.add("5.1", Level::warn, "not privileged", "privileged", fix("privileged: false", "-"));
    else
        b.add("5.1", Level::pass, "not privileged");

    std::vector<std::string> extra, dangerous;
    const auto& defaults = runtime::caps::docker_default_names();
    for (const auto& cap : c.capabilities)
        if (std::find(defaults.begin(), defaults.end(), cap) == defaults.end()) {
            extra.push_back(cap);
            if (kHostDangerous.count(cap)) dangerous.push_back(cap);
        }
    const std::string caps_title = "no capabilities beyond Docker's default set";
    if (extra.empty())
        b.add("5.2", Level::pass, caps_title, fmt::format("{} held", c.capabilities.size()));
    else if (c.workload) {
        std::string opts;
        for (const auto& x : extra)
            opts += (opts.empty() ? "" : " ") + std::string("--cap-add ") + x.substr(4);
        b.add("5.2", Level::warn, caps_title, "also " + join(extra, " "), "run it without " + opts);
    } else if (c.own_user_namespace)
        b.add("5.2", Level::pass, caps_title,
              "beyond it: " + join(extra, " ") + ", over its own user namespace only");
    else if (!dangerous.empty())
        b.add("5.2", Level::warn, caps_title,
              join(dangerous, " ") + " in the host's user namespace",
              "drop them from capabilities: in " + c.file + ", or give it user_namespace: true");
    else
        b.add("5.2", Level::info, caps_title,
              "also " + join(extra, " ") + ": what its job needs, as " + c.file + " explains");

    int n = 3;
    for (const char* ns : {"net", "pid", "ipc", "uts"}) {
        std::string id = fmt::format("5.{}", n++), title = fmt::format("own {} namespace", ns);
        if (!c.shared_namespaces.count(ns)) {
            b.add(id, Level::pass, title);
            continue;
        }
        if (std::string(ns) == "net")
            b.add(id, Level::info, title,
                  c.workload ? "shares the user runtime's network, the host's: there is no bridged "
                               "network yet (--net none for none)"
                             : "the host's network, by design (host: [net] in " + c.file + ")");
        else
            b.add(id, Level::warn, title, fmt::format("shares the host's {} namespace", ns),
                  fix(fmt::format("remove {} from host:", ns), "-"));
    }
    const std::string userns_title = "own user namespace or no capabilities";
    if (c.own_user_namespace)
        b.add("5.7", Level::pass, userns_title,
              c.host_uid.empty() ? "" : "its root is host uid " + c.host_uid);
    else if (c.capabilities.empty())
        b.add("5.7", Level::pass, userns_title, "no capabilities");
    else
        b.add("5.7", Level::info, userns_title,
              "the host's user namespace: its capabilities act on what it shares with the host");

    if (c.seccomp)
        b.add("5.8", Level::pass, "seccomp filter in force");
    else
        b.add("5.8", Level::warn, "seccomp filter in force", "unconfined",
              fix("privileged: false", "-"));
    if (c.no_new_privs)
        b.add("5.9", Level::pass, "no_new_privs set");
    else
        b.add("5.9", Level::warn, "no_new_privs set", "not set", fix("privileged: false", "-"));
    if (c.read_only_root)
        b.add("5.10", Level::pass, "read-only root");
    else if (c.workload)
        b.add("5.10", Level::info, "read-only root",
              "writable (keel run --read-only makes it read-only)");
    else
        b.add("5.10", Level::warn, "read-only root", "writable",
              "read_only_root: true in " + c.file);
    if (c.memory_max)
        b.add("5.11", Level::pass, "memory limit", fmt::format("{} MiB", *c.memory_max >> 20));
    else
        b.add("5.11", Level::warn, "memory limit", "none",
              fix("resources: memory: SIZE", "keel run --memory SIZE"));
    if (c.pids_max)
        b.add("5.12", Level::pass, "pids limit", fmt::format("{}", *c.pids_max));
    else
        b.add("5.12", Level::warn, "pids limit", "none",
              fix("resources: pids: N", "keel run --pids N"));

    // Host paths that give the host away when writable, and the control sockets.
    static const std::vector<std::string> kTrees = {"/boot",  "/dev", "/etc", "/lib",
                                                    "/lib64", "/usr", "/bin", "/sbin",
                                                    "/proc",  "/sys", "/root"};
    static const std::vector<std::string> kExact = {"/",    "/var",     "/var/lib", "/var/lib/keel",
                                                    "/run", "/run/keel"};
    auto under = [](const std::string& p, const std::string& dir) {
        return p == dir || starts_with(p, dir + "/");
    };
    std::vector<std::string> sensitive, sockets;
    for (const auto& m : c.mounts) {
        if (!m.bind) continue;
        bool hit = std::find(kExact.begin(), kExact.end(), m.source) != kExact.end();
        for (const auto& t : kTrees)
            hit = hit || under(m.source, t) || under(t, m.source);
        if (hit && !m.read_only) sensitive.push_back(m.source + ":" + m.destination);
        // keeld's control socket: /run/keel/system.sock (the system runtime's, for services)
        // or /run/keel/user (the user runtime's, as workloads would see it).
        const std::string sock = c.workload ? "/run/keel/user" : "/run/keel/system.sock";
        if (under(sock, m.source)) sockets.push_back(m.source);
    }
    if (sensitive.empty())
        b.add("5.13", Level::pass, "no sensitive host path mounted writable");
    else
        b.add("5.13", Level::warn, "no sensitive host path mounted writable", join(sensitive, ", "),
              fix("read_only: true for them under mounts:", "mount them :ro, or not at all (-v)"));
    if (sockets.empty())
        b.add("5.14", Level::pass, "no control socket mounted");
    else if (c.workload)
        b.add("5.14", Level::warn, "no control socket mounted",
              "the user runtime's socket via " + join(sockets, ", "),
              "do not mount /run/keel/user into workloads (-v): it controls every workload");
    else
        b.add("5.14", Level::info, "no control socket mounted",
              "holds keeld's control socket (" + join(sockets, ", ") +
                  "): it administers the host, by design");

    if (c.restart == "always" && c.restart_limit <= 0)
        b.add("5.15", Level::warn, "restart policy bounded", "always, without a limit",
              fix("restart_limit: N", "-"));
    else
        b.add("5.15", Level::pass, "restart policy bounded",
              c.restart == "no" ? "no"
                                : fmt::format("{}, backoff, failed after {} in a row", c.restart,
                                              c.restart_limit));
    return out;
}

Summary summarize(const std::vector<Check>& checks) {
    Summary s;
    for (const auto& c : checks) {
        s.checks++;
        if (c.level == Level::pass)
            s.pass++;
        else if (c.level == Level::warn)
            s.warn++;
        else
            s.info++;
    }
    return s;
}

namespace {

// What a run of PASS lines folds under: the host's numbered groups (1.1.x, 1.2.x, ...), a
// container's checks.
std::string fold_key(const Check& c) {
    if (!c.target.empty()) return c.section + "/" + c.target;
    auto parts = split(c.id, '.');
    return parts.size() >= 3 ? parts[0] + "." + parts[1] : c.id;
}

const std::map<std::string, std::string> kGroupTitles = {
    {"1.1", "sysctl hardening profile as configured"},
    {"1.2", "kernel command line hardening"},
    {"1.13", "sshd: key-only, no root login"},
    {"1.15", "control sockets' owner and mode"}};

} // namespace

std::string render(const std::vector<Check>& checks, bool verbose) {
    std::string out, section;
    auto line = [&](const Check& c) {
        std::string who = c.target.empty() ? "" : c.target + ": ";
        out += fmt::format("[{}] {} {}{}{}\n", level_name(c.level), c.id, who, c.title,
                           c.detail.empty() ? "" : " — " + c.detail);
        if (c.level == Level::warn && !c.fix.empty()) out += fmt::format("       fix: {}\n", c.fix);
    };
    std::set<std::string> done; // groups already shown
    for (size_t i = 0; i < checks.size(); i++) {
        const Check& c = checks[i];
        if (c.section != section) {
            section = c.section;
            out += section == "host"     ? "Host configuration\n"
                   : section == "system" ? "System services\n"
                                         : "Workloads\n";
        }
        std::string key = c.section + "|" + fold_key(c);
        if (!verbose && done.count(key)) continue;
        std::vector<const Check*> group;
        for (size_t j = i; j < checks.size(); j++)
            if (checks[j].section + "|" + fold_key(checks[j]) == key) group.push_back(&checks[j]);
        if (verbose || group.size() == 1) {
            line(c);
            continue;
        }
        // A group (a container's checks, the sysctl profile, ...) shows once, where it starts:
        // its passes as one line, then each finding.
        done.insert(key);
        size_t passes = 0;
        for (const auto* g : group)
            passes += g->level == Level::pass;
        if (passes) {
            if (!c.target.empty())
                out +=
                    fmt::format("[PASS] 5 {}: {} of {} checks\n", c.target, passes, group.size());
            else {
                auto t = kGroupTitles.find(fold_key(c));
                out += fmt::format("[PASS] {} {}: {} of {}\n", fold_key(c),
                                   t == kGroupTitles.end() ? c.title : t->second, passes,
                                   group.size());
            }
        }
        for (const auto* g : group)
            if (g->level != Level::pass) line(*g);
    }
    Summary s = summarize(checks);
    out += fmt::format("Checks: {}  Score: {}  ({} pass, {} warn, {} info)\n", s.checks, s.score(),
                       s.pass, s.warn, s.info);
    return out;
}

} // namespace keel::audit
