// `keel audit`: the host and every container checked against Keel's hardening, in the spirit
// of docker-bench-security's host configuration (1.x) and container runtime (5.x) sections.
//
// The checks are pure functions of facts; keeld gathers the facts from the running system
// (/proc, /sys, the containers' own /proc entries and cgroups) and the tests give them
// directly. Every warning says what to change in Keel's own terms: a configuration key, a
// service file, a `keel run` option.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace keel::audit {

enum class Level { pass, warn, info };
const char* level_name(Level l); // "PASS", "WARN", "INFO"

struct Check {
    std::string id;      // "1.1.3", "5.2"
    std::string section; // "host", "system", "workloads"
    std::string target;  // the container, or empty for the host
    Level level = Level::pass;
    std::string title;  // what is checked: "kernel.kptr_restrict = 2"
    std::string detail; // what was found, when it adds something
    std::string fix;    // WARN: what to change
};
nlohmann::json to_json(const Check& c);

// ---- host ----------------------------------------------------------------------------------

struct Listener {
    std::string proto; // tcp, tcp6, udp, udp6
    std::string address;
    int port = 0;
    std::string owner;    // "service ntp", "workload web", "pid 42 (nc)", "unknown"
    bool allowed = false; // owned by an enabled service
};

struct Account {
    std::string file; // "/etc/shadow", "/usr/share/keel/images/sshd/etc/passwd"
    std::string name;
    std::string password; // the password field as found
};

struct SocketFile {
    std::string path;
    bool exists = false;
    unsigned uid = 0, gid = 0, mode = 0; // mode: permission bits
    std::string expect;                  // "root:keel 0660"
    unsigned want_uid = 0, want_gid = 0, want_mode = 0;
};

struct HostFacts {
    std::vector<std::pair<std::string, std::string>> sysctl_profile; // key, wanted value
    std::map<std::string, std::optional<std::string>>
        sysctl_actual;   // key -> value (nullopt: no such key)
    std::string cmdline; // /proc/cmdline
    // From /etc/keel/cmdline.yml: words the command line must have, and those that weaken it
    // (a key alone matches any value of it).
    std::vector<std::string> hardening_params, weakening_params;
    std::string cmdline_policy_error; // cmdline.yml could not be read: nothing to check against
    std::vector<std::string> loaded_modules; // /proc/modules names
    std::set<std::string> allowed_modules;   // the allow-list and its dependencies
    bool modules_lock_wanted = true;         // modules.lock
    std::optional<std::string> lockdown;     // /sys/kernel/security/lockdown; nullopt: none
    std::string mountinfo;                   // /proc/self/mountinfo
    bool state_persistent = true;            // the state partition was found (else a tmpfs)
    std::vector<Listener> listeners;
    bool sshd_enabled = false;
    std::optional<std::string> sshd_config; // its text, when enabled
    std::vector<Account> accounts;
    std::vector<SocketFile> sockets;
    bool allow_privileged = false;
    // The project quota on /var/lib/keel/user (common/quota.h): whether it is enforced, and
    // its usage and limits, or why it is not.
    bool user_state_bounded = true;
    std::string user_state_detail;
};

std::vector<Check> host_checks(const HostFacts& f);

// ---- containers ----------------------------------------------------------------------------

struct MountFact {
    std::string source, destination;
    bool read_only = true;
    bool bind = true;
};

struct ContainerFacts {
    std::string name;
    bool workload = false; // user runtime (section "workloads") or system service ("system")
    bool running = false;  // facts read from the kernel (else from the definition)
    std::string file;      // the service file (system) or "keel run" (workloads)
    bool privileged = false;
    std::vector<std::string> capabilities; // effective, "CAP_NET_ADMIN"
    bool own_user_namespace = false;
    std::string host_uid; // its root's uid on the host, when known
    std::set<std::string>
        shared_namespaces; // of net, pid, ipc, uts: shared with the runtime's host
    bool seccomp = true;
    bool no_new_privs = true;
    bool read_only_root = true;
    std::optional<int64_t> memory_max, pids_max;
    std::vector<MountFact> mounts;
    std::string restart; // no, on-failure, always
    int restart_limit = 0;
};

std::vector<Check> container_checks(const ContainerFacts& c);

// ---- report --------------------------------------------------------------------------------

struct Summary {
    int checks = 0, pass = 0, warn = 0, info = 0;
    int score() const { return pass - warn; }
};
Summary summarize(const std::vector<Check>& checks);

// The screen: WARN and INFO lines in full, runs of PASS lines of one group folded into one
// ("[PASS] 1.1 sysctl profile: 28 of 28 as configured") unless `verbose`; a summary last.
std::string render(const std::vector<Check>& checks, bool verbose);

} // namespace keel::audit
