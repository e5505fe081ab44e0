// ContainerSpec: everything the runtime needs to start one container. Built from an OCI
// config.json (oci.cc) or from a Keel service definition; the runtime itself never reads files
// to decide policy. Nothing here is privileged by default.
#pragma once

#include <sys/resource.h>
#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace keel::runtime {

enum class NsType { mount, pid, uts, ipc, net, cgroup, user, time };

struct Namespace {
    NsType type;
    std::string path; // empty: create a new one; else join the namespace at this path
};

struct IdMap {
    uint32_t inside = 0;
    uint32_t outside = 0;
    uint32_t count = 0;
};

struct Mount {
    std::string destination; // absolute path inside the container
    std::string type;        // "proc", "tmpfs", "bind", ...; "bind" means a bind mount
    std::string source;
    unsigned long flags = 0;       // MS_* flags (MS_BIND, MS_RDONLY, MS_NOSUID, ...)
    unsigned long propagation = 0; // MS_PRIVATE / MS_SLAVE / MS_SHARED / MS_UNBINDABLE (| MS_REC)
    std::string data;              // filesystem options ("mode=755,size=65536k")
    // A bind whose source lies where containers write (a workload's volume, keeld's run and
    // state directories): non-empty, the source is opened beneath this directory with no
    // symbolic link followed, and bound from that descriptor, so a link planted between the
    // caller's check and the mount is refused instead of followed.
    std::string source_beneath;
    bool bind() const;
};

struct Device {
    std::string path; // inside the container, e.g. /dev/fuse
    char type = 'c';  // 'c' or 'b'
    uint32_t major = 0, minor = 0;
    mode_t mode = 0666;
    uid_t uid = 0;
    gid_t gid = 0;
};

// One rule of the device cgroup, as OCI linux.resources.devices writes it. device_filter.h
// says how a list of them decides and what the runtime adds around the spec's own.
struct DeviceRule {
    // Access bits, the values of BPF_DEVCG_ACC_*.
    static constexpr unsigned mknod = 1, read = 2, write = 4, all = 7;
    bool allow = false;
    char type = 'a';       // 'a' (any), 'c' or 'b'
    int64_t major = -1;    // -1: any
    int64_t minor = -1;    // -1: any
    unsigned access = all; // mknod | read | write
    bool operator==(const DeviceRule&) const = default;
};

// Capability sets by number (CAP_* values). Each set is exactly what the container gets.
struct Capabilities {
    std::vector<int> bounding, effective, permitted, inheritable, ambient;
};

struct Rlimit {
    int resource = 0; // RLIMIT_*
    rlim_t soft = 0, hard = 0;
};

// A seccomp profile as data: the default action plus rules. Mirrors the OCI linux.seccomp
// structure so both Keel's YAML profile and config.json map onto it one to one.
struct SeccompArg {
    unsigned index = 0;
    uint64_t value = 0, value_two = 0;
    std::string op; // SCMP_CMP_NE, SCMP_CMP_EQ, SCMP_CMP_MASKED_EQ, ...
};
struct SeccompRule {
    std::vector<std::string> names;
    std::string action; // SCMP_ACT_ALLOW, SCMP_ACT_ERRNO, SCMP_ACT_KILL, ...
    std::optional<int> errno_ret;
    std::vector<SeccompArg> args;
};
struct SeccompProfile {
    std::string default_action = "SCMP_ACT_ERRNO";
    std::optional<int> default_errno;       // EPERM when unset and the action is SCMP_ACT_ERRNO
    std::vector<std::string> architectures; // SCMP_ARCH_*; empty: native only
    std::vector<std::string> flags;         // SECCOMP_FILTER_FLAG_*
    std::vector<SeccompRule> syscalls;
};

struct Resources {
    std::optional<int64_t> memory_max;  // bytes
    std::optional<int64_t> memory_high; // bytes: reclaimed and throttled above it (cgroup v2)
    std::optional<int64_t> memory_swap; // bytes
    std::optional<int64_t> pids_max;
    std::optional<int64_t> cpu_quota;   // microseconds per period; needs cpu_period
    std::optional<uint64_t> cpu_period; // microseconds
    std::optional<uint64_t> cpu_weight; // 1..10000 (cgroup v2)
    bool any() const {
        return memory_max || memory_high || memory_swap || pids_max || cpu_quota || cpu_weight;
    }
};

struct Stdio {
    enum class Kind { inherit, null, file, fd };
    Kind kind = Kind::inherit;
    std::string path; // Kind::file: opened by the parent (append for stdout/stderr)
    int fd = -1;      // Kind::fd: the parent's fd to hand over (a pipe end, a pty)
};

struct ContainerSpec {
    std::string id;

    // process
    std::vector<std::string> args;
    std::vector<std::string> env;
    std::string cwd = "/";
    uid_t uid = 0;
    gid_t gid = 0;
    std::vector<gid_t> additional_gids;
    std::optional<mode_t> umask;
    bool no_new_privileges = true;
    bool terminal = false; // a pty is allocated by the caller and passed as stdio
    // A terminal made inside the container, as runc's console socket does: the child opens
    // the container's own /dev/ptmx (its devpts) once its root is set up, the slave becomes
    // its stdio and controlling terminal, and the master comes back as
    // Container::take_console(). So the terminal's name (/dev/pts/N) exists in there, and
    // `tty` or ttyname() work. The stdio fields are not used.
    bool console = false;
    Capabilities caps;
    std::vector<Rlimit> rlimits;
    std::optional<int> oom_score_adj;
    std::optional<SeccompProfile> seccomp;

    // root filesystem
    std::string rootfs; // absolute host path
    bool readonly_root = false;
    unsigned long rootfs_propagation = 0; // 0: MS_PRIVATE | MS_REC
    std::vector<Mount> mounts;            // applied in order, after the rootfs bind
    std::vector<Device> devices;          // extra device nodes, beyond the default set
    std::vector<DeviceRule> device_rules; // linux.resources.devices, in order
    std::vector<std::string> masked_paths;
    std::vector<std::string> readonly_paths;
    std::string hostname, domainname;
    std::map<std::string, std::string> sysctl; // written inside the container's namespaces

    // isolation
    std::vector<Namespace> namespaces;
    std::vector<IdMap> uid_maps, gid_maps;

    // cgroup v2: path below the cgroup2 root; empty means the runtime's default
    // ("keel/<id>"). The cgroup is created before the child runs and removed after it exits.
    std::string cgroup_path;
    bool cgroup_delegate = false; // give the container ownership of its subtree (nested runtimes)
    std::string cgroup_join;      // run in this existing cgroup (an exec), which is not removed
    Resources resources;

    // stdio and inherited fds: extra_fds are handed over as 3, 4, ... in order
    Stdio stdin_, stdout_, stderr_;
    std::vector<int> extra_fds;

    bool has_namespace(NsType t) const;
    const Namespace* find_namespace(NsType t) const;
};

const char* ns_name(NsType t); // "mount", "pid", ... (OCI names)
std::optional<NsType> ns_from_name(const std::string& name);
int ns_clone_flag(NsType t);        // CLONE_NEW*
const char* ns_proc_name(NsType t); // name under /proc/PID/ns/: "mnt", "pid", ...

} // namespace keel::runtime
