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
    {"/dev/fd", "/proc/self/fd"},
    {"/dev/stdin", "/proc/self/fd/0"},
    {"/dev/stdout", "/proc/self/fd/1"},
    {"/dev/stderr", "/proc/self/fd/2"},
};

bool is_device(const struct stat& st, mode_t type, dev_t rdev) {
    return (st.st_mode & S_IFMT) == type && st.st_rdev == rdev;
}

// The node `name` in `dir` is made, or kept if the image already has that very device there.
// Anything else in its place (a symlink, a file, another device) is replaced: acting on it by
// name would follow a symlink to wherever the image points, the host included.
Status mknod_exact(int dir, const std::string& name, const Device& d, mode_t type, dev_t rdev) {
    if (::mknodat(dir, name.c_str(), type | (d.mode & 07777), rdev) == 0) return {};
    if (errno != EEXIST) return sys_error("mknod " + d.path);
    struct stat st {};
    if (::fstatat(dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0)
        return sys_error("stat " + d.path);
    if (is_device(st, type, rdev)) return {};
    if (::unlinkat(dir, name.c_str(), S_ISDIR(st.st_mode) ? AT_REMOVEDIR : 0) < 0)
        return sys_error("replace " + d.path + " (the image has something else there)");
    if (::mknodat(dir, name.c_str(), type | (d.mode & 07777), rdev) < 0)
        return sys_error("mknod " + d.path);
    return {};
}

Status make_node(int root_fd, const Device& d, bool in_user_ns) {
    std::string parent = d.path.substr(0, d.path.rfind('/'));
    std::string name = d.path.substr(d.path.rfind('/') + 1);
    auto dir = rootfs::open_in_root(root_fd, parent.empty() ? "/" : parent, true, false);
    if (!dir) return dir.error();
    if (!in_user_ns) {
        mode_t type = d.type == 'b' ? S_IFBLK : S_IFCHR;
        dev_t rdev = makedev(d.major, d.minor);
        KEEL_TRY(mknod_exact(dir->get(), name, d, type, rdev));
        // From here on through one descriptor of the node itself, checked again: whatever is
        // done to it lands on that device node and nowhere else.
        Fd node(::openat(dir->get(), name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
        struct stat st {};
        if (!node || ::fstat(node.get(), &st) < 0) return sys_error("open " + d.path);
        if (!is_device(st, type, rdev))
            return sys_error(d.path + ": replaced while being made", EEXIST);
        // mknod applies the umask; the mode must be exactly what was asked for. (chmod has no
        // O_PATH form: the descriptor's /proc link names the node itself.)
        if (::fchmodat(AT_FDCWD, rootfs::fd_path(node.get()).c_str(), d.mode & 07777, 0) < 0)
            return sys_error("chmod " + d.path);
        if (::fchownat(node.get(), "", d.uid, d.gid, AT_EMPTY_PATH) < 0)
            return sys_error("chown " + d.path);
        return {};
    }
    // A user namespace cannot create device nodes: bind the host's node over an empty file (or
    // over a node the image has there; never through a symlink, nor onto a directory).
    Fd made(::openat(dir->get(), name.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC,
                     0644));
    if (!made && errno != EEXIST) return sys_error("create " + d.path);
    Fd target(::openat(dir->get(), name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
    struct stat st {};
    if (!target || ::fstat(target.get(), &st) < 0) return sys_error("open " + d.path);
    if (!S_ISREG(st.st_mode) && !S_ISCHR(st.st_mode) && !S_ISBLK(st.st_mode))
        return sys_error(d.path + ": the image has a symlink or directory where the device goes",
                         ELOOP);
    std::string host = d.path;
    if (::mount(host.c_str(), rootfs::fd_path(target.get()).c_str(), nullptr, MS_BIND, nullptr) < 0)
        return sys_error("bind " + host);
    return {};
}

} // namespace

Status populate(int root_fd, const ContainerSpec& spec, bool in_user_ns) {
    for (const auto& d : kDefaults)
        KEEL_TRY(make_node(root_fd, d, in_user_ns));
    for (const auto& d : spec.devices)
        KEEL_TRY(make_node(root_fd, d, in_user_ns));

    auto dev = rootfs::open_in_root(root_fd, "/dev", true, false);
    if (!dev) return dev.error();
    for (const auto& [link, to] : kLinks)
        if (::symlinkat(to, dev->get(), link + 5) < 0 && errno != EEXIST)
            return sys_error(fmt::format("symlink {}", link));
    // With a private devpts at /dev/pts, /dev/ptmx must be its ptmx, or ptys opened in the
    // container would come from the host's devpts instance.
    struct stat st {};
    if (rootfs::open_in_root(root_fd, "/dev/pts/ptmx", false, false)) {
        if (::fstatat(dev->get(), "ptmx", &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISLNK(st.st_mode))
            ::unlinkat(dev->get(), "ptmx", 0);
        if (::symlinkat("pts/ptmx", dev->get(), "ptmx") < 0 && errno != EEXIST)
            return sys_error("symlink /dev/ptmx");
    }
    return {};
}

} // namespace keel::runtime::devices
