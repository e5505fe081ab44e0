#include "runtime/devices.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <fmt/format.h>

#include "common/fd.h"
#include "runtime/rootfs.h"

namespace keel::runtime::devices {

namespace {

// The nodes the OCI spec requires in every container, and nothing else.
const Device kDefaults[] = {
    {"/dev/null", 'c', 1, 3, 0666},    {"/dev/zero", 'c', 1, 5, 0666},
    {"/dev/full", 'c', 1, 7, 0666},    {"/dev/random", 'c', 1, 8, 0666},
    {"/dev/urandom", 'c', 1, 9, 0666}, {"/dev/tty", 'c', 5, 0, 0666},
};

const std::pair<const char*, const char*> kLinks[] = {
    {"/dev/fd", "/proc/self/fd"},         {"/dev/stdin", "/proc/self/fd/0"},
    {"/dev/stdout", "/proc/self/fd/1"},   {"/dev/stderr", "/proc/self/fd/2"},
};

Status make_node(int root_fd, const Device& d, bool in_user_ns) {
    std::string parent = d.path.substr(0, d.path.rfind('/'));
    std::string name = d.path.substr(d.path.rfind('/') + 1);
    auto dir = rootfs::open_in_root(root_fd, parent.empty() ? "/" : parent, true, false);
    if (!dir) return dir.error();
    if (!in_user_ns) {
        mode_t type = d.type == 'b' ? S_IFBLK : S_IFCHR;
        if (::mknodat(dir->get(), name.c_str(), type | (d.mode & 07777), makedev(d.major, d.minor)) < 0 &&
            errno != EEXIST)
            return sys_error("mknod " + d.path);
        // mknod applies the umask; the mode must be exactly what was asked for.
        if (::fchmodat(dir->get(), name.c_str(), d.mode & 07777, 0) < 0)
            return sys_error("chmod " + d.path);
        if (::fchownat(dir->get(), name.c_str(), d.uid, d.gid, AT_SYMLINK_NOFOLLOW) < 0)
            return sys_error("chown " + d.path);
        return {};
    }
    // A user namespace cannot create device nodes: bind the host's node over an empty file.
    int f = ::openat(dir->get(), name.c_str(), O_CREAT | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (f < 0) return sys_error("create " + d.path);
    ::close(f);
    auto target = rootfs::open_in_root(root_fd, d.path, false, true);
    if (!target) return target.error();
    std::string host = d.path;
    if (::mount(host.c_str(), rootfs::fd_path(target->get()).c_str(), nullptr, MS_BIND, nullptr) < 0)
        return sys_error("bind " + host);
    return {};
}

} // namespace

Status populate(int root_fd, const ContainerSpec& spec, bool in_user_ns) {
    for (const auto& d : kDefaults) KEEL_TRY(make_node(root_fd, d, in_user_ns));
    for (const auto& d : spec.devices) KEEL_TRY(make_node(root_fd, d, in_user_ns));

    auto dev = rootfs::open_in_root(root_fd, "/dev", true, false);
    if (!dev) return dev.error();
    for (const auto& [link, to] : kLinks)
        if (::symlinkat(to, dev->get(), link + 5) < 0 && errno != EEXIST)
            return sys_error(fmt::format("symlink {}", link));
    // With a private devpts at /dev/pts, /dev/ptmx must be its ptmx, or ptys opened in the
    // container would come from the host's devpts instance.
    struct stat st{};
    if (::fstatat(dev->get(), "pts/ptmx", &st, AT_SYMLINK_NOFOLLOW) == 0) {
        if (::fstatat(dev->get(), "ptmx", &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISLNK(st.st_mode))
            ::unlinkat(dev->get(), "ptmx", 0);
        if (::symlinkat("pts/ptmx", dev->get(), "ptmx") < 0 && errno != EEXIST)
            return sys_error("symlink /dev/ptmx");
    }
    return {};
}

} // namespace keel::runtime::devices
