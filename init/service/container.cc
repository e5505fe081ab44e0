// A service → the container keeld runs for it, in two steps: prepare_host() asks the host
// (the image's users and groups, bind sources, device nodes, the seccomp profile) and
// translate() turns the service and those answers into a ContainerSpec, touching nothing.
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/openat2.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <optional>

#include <fmt/format.h>

#include "common/fd.h"
#include "common/strings.h"
#include "runtime/capabilities.h"
#include "runtime/defaults.h"
#include "runtime/seccomp.h"
#include "service/service_spec.h"

namespace keel::service {

namespace {

// Looks a user or group up in the image's own /etc/passwd or /etc/group.
// A uid or gid as written; 2^32-1 is "no id" to the kernel, and larger ones would wrap (to 0).
std::optional<uint32_t> numeric_id(const std::string& text) {
    uint32_t v = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (text.empty() || ec != std::errc() || end != text.data() + text.size() || v == UINT32_MAX)
        return std::nullopt;
    return v;
}

Result<uint32_t> lookup_id(const std::string& rootfs, const char* file, const std::string& name) {
    if (!name.empty() && std::all_of(name.begin(), name.end(), ::isdigit)) {
        if (auto v = numeric_id(name)) return *v;
        return plain_error(fmt::format("id {} is out of range", name));
    }
    // The image's file is untrusted data, read inside its root with a bound (it is read in
    // keeld's event loop).
    std::string text;
    if (auto r = read_file_in_root(rootfs, file, text); !r) return r.error();
    for (const auto& line : split(text, '\n')) {
        auto f = split(line, ':');
        if (f.size() < 3 || f[0] != name) continue;
        if (auto v = numeric_id(f[2])) return *v;
        return plain_error(
            fmt::format("'{}' in the image's {} has no valid id ('{}')", name, file, f[2]));
    }
    return plain_error(fmt::format("'{}' not found in the image's {}", name, file));
}

// One component beneath `dir`, as an O_PATH descriptor; `follow`: links are followed (a
// service file's path in the image), else a link anywhere is refused with ELOOP.
int open_component(int dir, const std::string& name, bool follow) {
    return open_at2(dir, name.c_str(), O_PATH,
                    RESOLVE_NO_MAGICLINKS | (follow ? 0 : RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS))
        .release();
}

// A bind mount's source, opened component by component. keeld owns its run and state
// directories: a service's directory there (a socket dir, a runtime's storage) is created on
// first use (for a service in a user namespace, owned by its root), and no link is followed
// beneath them, where containers write. A workload's source follows no link anywhere.
// Beneath which directory no link of `source` is followed; empty: links are followed (a
// service's own path outside keeld's directories).
std::string mount_source_root(const ServiceSpec& s, const std::string& source,
                              const ContainerContext& ctx) {
    for (const auto& owned : {ctx.run_dir, ctx.state_dir})
        if (source.starts_with(owned + "/")) return owned;
    return s.workload ? "/" : "";
}

Result<Fd> open_mount_source(const ServiceSpec& s, const std::string& source,
                             const ContainerContext& ctx) {
    if (!source.starts_with("/"))
        return plain_error("mount source " + source + ": not an absolute path");
    std::string root = "/";
    for (const auto& owned : {ctx.run_dir, ctx.state_dir})
        if (source.starts_with(owned + "/")) root = owned;
    bool keeld_owned = root != "/";
    bool follow = !keeld_owned && !s.workload;
    std::string what = "mount source " + source;
    Fd cur(::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!cur) return sys_error(what + ": open " + root);
    auto parts = split(source.substr(root.size()), '/');
    std::erase_if(parts, [](const std::string& p) { return p.empty() || p == "."; });
    bool created = false;
    for (const auto& part : parts) {
        if (part == "..") return plain_error(what + ": '..' is not allowed in a mount source");
        int fd = open_component(cur.get(), part, follow);
        if (fd < 0 && errno == ENOENT && keeld_owned) {
            if (::mkdirat(cur.get(), part.c_str(), 0755) < 0 && errno != EEXIST)
                return sys_error(what + ": mkdir " + part);
            created = true;
            fd = open_component(cur.get(), part, follow);
        }
        if (fd < 0 && errno == ELOOP)
            return plain_error(what + ": goes through a symbolic link at '" + part +
                               "' (give the path it leads to)");
        if (fd < 0) return sys_error(what);
        cur.reset(fd);
    }
    if (created && s.user_namespace.enabled && s.user_namespace.host_id &&
        ::fchownat(cur.get(), "", s.user_namespace.host_id, s.user_namespace.host_id,
                   AT_EMPTY_PATH) < 0)
        return sys_error("chown " + source);
    return cur;
}

std::string rootfs_of(const ServiceSpec& s, const ContainerContext& ctx) {
    return s.image.starts_with("/") ? s.image : ctx.images_dir + "/" + s.image;
}

// The checks on the service alone: made by translate(), and by prepare_host() at the point
// where to_container() always made them, so that the first error reported stays the same.
Status check_privileged(const ServiceSpec& s, const ContainerContext& ctx) {
    if (s.privileged && !ctx.allow_privileged)
        return plain_error(
            fmt::format("{}: privileged: true is refused (the system configuration does not set "
                        "allow_privileged: true)",
                        s.file));
    return {};
}

Status check_user_namespace(const ServiceSpec& s) {
    if (s.user_namespace.enabled && (!s.user_namespace.host_id || !s.user_namespace.size))
        return plain_error(s.file + ": user_namespace: no id range");
    return {};
}

Result<runtime::Device> stat_device(const ServiceSpec& s, const std::string& d) {
    struct stat st {};
    if (::stat(d.c_str(), &st) < 0) return sys_error(fmt::format("{}: device {}", s.file, d));
    if (!S_ISCHR(st.st_mode) && !S_ISBLK(st.st_mode))
        return plain_error(fmt::format("{}: {} is not a device", s.file, d));
    runtime::Device dev;
    dev.path = d;
    dev.type = S_ISCHR(st.st_mode) ? 'c' : 'b';
    dev.major = major(st.st_rdev);
    dev.minor = minor(st.st_rdev);
    dev.mode = st.st_mode & 0777;
    dev.uid = st.st_uid;
    dev.gid = st.st_gid;
    return dev;
}

} // namespace

Result<HostFacts> prepare_host(const ServiceSpec& s, const ContainerContext& ctx) {
    HostFacts f;
    std::string rootfs = rootfs_of(s, ctx);
    struct stat st {};
    if (::stat(rootfs.c_str(), &st) < 0 || !S_ISDIR(st.st_mode))
        return plain_error(fmt::format("{}: image '{}' not found at {}", s.file, s.image, rootfs));
    KEEL_TRY(check_privileged(s, ctx));
    auto uid = lookup_id(rootfs, "/etc/passwd", s.user);
    if (!uid) return wrap(s.file + ": user", uid.error());
    f.uid = *uid;
    auto gid = lookup_id(rootfs, "/etc/group",
                         s.group.empty() ? (s.user == "root" ? "0" : s.user) : s.group);
    if (!gid) return wrap(s.file + ": group", gid.error());
    f.gid = *gid;
    KEEL_TRY(check_user_namespace(s));
    for (const auto& m : s.mounts) {
        if (m.type == "tmpfs") continue;
        // Checked (and created, beneath keeld's own directories) here, mounted by path in the
        // container's own mount namespace (a bind from this descriptor would cross
        // namespaces, which the kernel refuses).
        auto src = open_mount_source(s, m.source, ctx);
        if (!src) return wrap(s.file, src.error());
    }
    for (const auto& d : s.devices) {
        auto dev = stat_device(s, d);
        if (!dev) return dev.error();
        f.devices.push_back(std::move(*dev));
    }
    f.last_cap = runtime::caps::last_cap();
    if (!s.privileged) {
        auto prof = runtime::seccomp::load_profile(ctx.seccomp_profile, s.capabilities);
        if (!prof) return prof.error();
        f.seccomp = std::move(*prof);
    }
    return f;
}

namespace {

// Capabilities by Docker's rules for a workload, and as declared for a service.
void set_capabilities(const ServiceSpec& s, const HostFacts& f, runtime::ContainerSpec& c) {
    std::vector<int> caps = s.capabilities;
    if (s.privileged) {
        for (int i = 0; i <= f.last_cap; ++i)
            caps.push_back(i);
        // Every device too, as Docker's --privileged: with CAP_SYS_ADMIN on the host the
        // service could detach its device program anyway.
        c.device_rules = {{true, 'a', -1, -1, runtime::DeviceRule::all}};
    }
    c.caps.bounding = c.caps.permitted = c.caps.effective = caps;
    if (c.uid != 0 && s.workload && !s.privileged) {
        // Docker's rule for a non-root user: what it may gain (a setuid binary, file
        // capabilities) is bounded; it holds nothing itself.
        c.caps.permitted.clear();
        c.caps.effective.clear();
    } else if (c.uid != 0) {
        // A non-root service keeps its declared capabilities across exec only as ambient ones.
        c.caps.inheritable = c.caps.ambient = caps;
    }
}

void set_namespaces(const ServiceSpec& s, runtime::ContainerSpec& c) {
    using runtime::NsType;
    c.namespaces = {{NsType::mount, ""}, {NsType::cgroup, ""}};
    if (s.user_namespace.enabled) {
        c.namespaces.push_back({NsType::user, ""});
        c.uid_maps = c.gid_maps = {{0, s.user_namespace.host_id, s.user_namespace.size}};
    }
    c.cgroup_delegate = s.delegate_cgroup;
    // Not keeld's -900 (pid1/sys.cc): what runs in a container is what the OOM killer takes.
    // In a user namespace the child cannot write its own /proc file (owned by host root):
    // keeld sets it from outside once the container runs (Daemon::on_spawned).
    if (!s.user_namespace.enabled) c.oom_score_adj = 0;
    if (!s.host.pid) c.namespaces.push_back({NsType::pid, ""});
    if (!s.host.ipc) c.namespaces.push_back({NsType::ipc, ""});
    if (!s.host.uts) c.namespaces.push_back({NsType::uts, ""});
    if (!s.host.net) c.namespaces.push_back({NsType::net, ""});
    if (!s.host.uts) c.hostname = s.name;
}

// The default mounts, the service's own, its devices and the /proc protections.
void set_filesystem(const ServiceSpec& s, const ContainerContext& ctx, const HostFacts& f,
                    runtime::ContainerSpec& c) {
    c.mounts = runtime::defaults::mounts();
    // A delegated subtree is the service's to manage: its cgroup namespace's root, writable.
    for (auto& m : c.mounts)
        if (m.type == "cgroup" && s.delegate_cgroup) m.flags &= ~MS_RDONLY;
    for (const auto& m : s.mounts) {
        if (m.type == "tmpfs") {
            c.mounts.push_back(runtime::defaults::mnt(
                m.destination.c_str(), "tmpfs", "tmpfs",
                MS_NOSUID | MS_NODEV | (m.read_only ? MS_RDONLY : 0), m.options.c_str()));
            continue;
        }
        c.mounts.push_back(runtime::defaults::mnt(m.destination.c_str(), "bind", m.source.c_str(),
                                                  MS_BIND | MS_REC | MS_NOSUID | MS_NODEV |
                                                      (m.read_only ? MS_RDONLY : 0)));
        // The runtime opens it again the same way when it mounts: a link planted after
        // prepare_host() checked it is refused there too.
        c.mounts.back().source_beneath = mount_source_root(s, m.source, ctx);
    }
    c.devices = f.devices;
    // A nested runtime (a delegated cgroup) must be able to mount /proc for its own
    // containers, and the kernel allows that in a user namespace only while an unmasked /proc
    // is visible (mount_too_revealing). What the masks hide is out of its reach anyway: its
    // root is an unprivileged host uid with no capability in the initial user namespace
    // (kcore needs CAP_SYS_RAWIO there, sysrq-trigger and most of /proc/sys CAP_SYS_ADMIN).
    if (!s.delegate_cgroup || !s.user_namespace.enabled) {
        c.masked_paths = runtime::defaults::masked_paths();
        c.readonly_paths = runtime::defaults::readonly_paths();
    }
}

} // namespace

Result<runtime::ContainerSpec> translate(const ServiceSpec& s, const ContainerContext& ctx,
                                         const HostFacts& f) {
    KEEL_TRY(check_privileged(s, ctx));
    KEEL_TRY(check_user_namespace(s));
    if (!s.privileged && !f.seccomp)
        return plain_error(s.file + ": no seccomp profile (prepare_host loads it)");
    runtime::ContainerSpec c;
    c.id = s.name;
    c.args = s.command;
    c.env = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"};
    c.env.insert(c.env.end(), s.environment.begin(), s.environment.end());
    c.cwd = s.working_dir;
    c.rootfs = rootfs_of(s, ctx);
    c.uid = f.uid;
    c.gid = f.gid;
    c.readonly_root = s.read_only_root;
    c.no_new_privileges = true;
    set_capabilities(s, f, c);
    set_namespaces(s, c);
    set_filesystem(s, ctx, f, c);
    c.resources = s.resources;
    c.cgroup_path = ctx.cgroup_prefix + s.name;
    if (!s.privileged) c.seccomp = f.seccomp;
    return c;
}

Result<runtime::ContainerSpec> to_container(const ServiceSpec& s, const ContainerContext& ctx) {
    auto facts = prepare_host(s, ctx);
    if (!facts) return facts.error();
    return translate(s, ctx, *facts);
}

} // namespace keel::service
