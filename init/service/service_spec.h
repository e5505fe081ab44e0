// A system service definition (services/NAME/service.yml, installed as
// /etc/keel/services/NAME.yml): what keeld runs in one least-privilege container. Nothing is
// granted unless the file asks for it: no capabilities, no host namespaces, a read-only root, the
// default seccomp profile, no_new_privs.
#pragma once

#include <signal.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/error.h"
#include "runtime/spec.h"

namespace keel::service {

enum class RestartPolicy { no, on_failure, always };
enum class ReadyKind { started, path, notify };

struct ServiceMount {
    std::string type = "bind"; // bind | tmpfs
    std::string source;        // host path (bind)
    std::string destination;   // absolute path in the container
    bool read_only = true;
    std::string options; // tmpfs data, e.g. "size=1m,mode=755"
};

struct HostNamespaces {
    bool net = false, pid = false, ipc = false, uts = false;
};

// A user namespace for the service: its root is an unprivileged host id. `host_id` 0 means
// "the configured range" (user_runtime.host_id / user_runtime.size), filled in by keeld.
struct UserNamespace {
    bool enabled = false;
    uint32_t host_id = 0, size = 0;
};

struct ServiceSpec {
    std::string name;  // the file's base name
    std::string file;  // where it was read from, for messages
    std::string image; // a directory name under the images dir, or an absolute path
    std::vector<std::string> command;
    std::vector<std::string> environment; // "K=V"
    std::string user = "root", group;     // names from the image's /etc/passwd, or numbers
    std::string working_dir = "/";
    std::vector<int> capabilities; // CAP_* numbers, added to an empty set
    HostNamespaces host;
    UserNamespace user_namespace;
    bool delegate_cgroup = false; // the service owns its cgroup subtree (a nested runtime)
    std::vector<ServiceMount> mounts;
    std::vector<std::string> devices; // host device nodes made available, e.g. /dev/ttyS0
    bool read_only_root = true;
    runtime::Resources resources;
    RestartPolicy restart = RestartPolicy::on_failure;
    int restart_limit = 5; // consecutive failures before the service is marked failed
    // YAML `after` and `requires` (`requires` is a C++20 keyword, hence the member name).
    std::vector<std::string> after, required;
    ReadyKind ready = ReadyKind::started;
    std::string ready_path; // ReadyKind::path
    int stop_signal = SIGTERM;
    int stop_timeout_s = 10;
    bool enabled = false;
    bool privileged = false;
    // A workload (made from a `keel run` request rather than a service file): untrusted as
    // a whole. Docker's rules apply: a non-root user's capabilities are a bounding set only
    // (none effective, permitted or ambient), while a service file's non-root user gets the
    // ones it declares (ntp's CAP_SYS_TIME); a bind source goes through no symbolic link,
    // since one may have been planted by another workload in a volume they share.
    bool workload = false;
};

// Parses one file. Errors name file, line, column and key: "console.yml:4:3: capabilities[1]:
// unknown capability CAP_NET_ADMN (did you mean CAP_NET_ADMIN?)".
Result<ServiceSpec> parse_service(const std::string& yaml_text, const std::string& file);

struct Catalog {
    std::vector<ServiceSpec> services;         // the valid ones, sorted by name
    std::map<std::string, std::string> errors; // service name -> why it is not usable
};
// Every *.yml in `dir`. One bad file disables that service only. Dependencies on unknown
// services and cycles are reported on the services concerned ("cycle: a -> b -> a").
Catalog load_catalog(const std::string& dir);
// Several directories: the image's /etc/keel/services, then /var/lib/keel/services for the
// user's own. A name already taken by an earlier directory is an error on the later file.
Catalog load_catalog(const std::vector<std::string>& dirs);

// Start order: dependencies (after + requires) first; ties by name.
std::vector<std::string> start_order(const Catalog& c);

struct ContainerContext {
    std::string images_dir = "/usr/share/keel/images";
    std::string seccomp_profile = "/etc/keel/seccomp/default.yml";
    std::string run_dir = "/run/keel";
    std::string state_dir = "/var/lib/keel";
    std::string cgroup_prefix = "keel/system/"; // the user instance: "workloads/"
    bool allow_privileged = false;
};
// What the host says about a service, asked by prepare_host(): what translate() needs and
// cannot know from the file alone.
struct HostFacts {
    uint32_t uid = 0, gid = 0;            // user and group, from the image's own files
    std::vector<runtime::Device> devices; // the service's devices, as stat(2) found them
    std::optional<runtime::SeccompProfile>
        seccomp;       // the profile with its capabilities (unprivileged)
    int last_cap = -1; // the kernel's highest (runtime::caps::last_cap()): a privileged service
                       // gets 0..last_cap
};
// Asks the host, in the order the checks have always run (the first error reported stays the
// same): the image exists, the user and group in it, each bind source (created, and chowned
// to a user namespace's root, when it lies beneath keeld's run or state directory), each
// device, the seccomp profile. keeld calls it, then translate().
Result<HostFacts> prepare_host(const ServiceSpec& s, const ContainerContext& ctx);
// The container for a service, from the service and prepare_host()'s answers only: no file
// is read, created or looked at. Fails only on what the service alone refuses (privileged
// without allow_privileged, a user namespace without a range).
Result<runtime::ContainerSpec> translate(const ServiceSpec& s, const ContainerContext& ctx,
                                         const HostFacts& facts);
// Both: the container keeld runs for a service.
Result<runtime::ContainerSpec> to_container(const ServiceSpec& s, const ContainerContext& ctx);

} // namespace keel::service
