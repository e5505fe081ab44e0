#include "runtime/rootfs.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <linux/mount.h>
#include <linux/openat2.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <fmt/format.h>

#include "common/strings.h"
#include "runtime/devices.h"
#include "runtime/sysctl.h"

namespace keel::runtime::rootfs {

std::string fd_path(int fd) {
    return fmt::format("/proc/self/fd/{}", fd);
}

static int openat2_beneath(int dirfd, const char* rel, int flags) {
    // BENEATH, not IN_ROOT: a destination that escapes the root is refused (EXDEV), never
    // silently re-rooted, so a hostile image cannot redirect a mount.
    return open_at2(dirfd, rel, flags, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS).release();
}

static Error resolve_error(const std::string& path, int err) {
    if (err == EXDEV)
        return sys_error(path + ": resolves through a symlink or '..' that leaves the rootfs", err);
    return sys_error("open " + path + " in rootfs", err);
}

Result<Fd> open_in_root(int root_fd, const std::string& path, bool create, bool last_is_file) {
    std::string rel(trim(path));
    while (!rel.empty() && rel.front() == '/')
        rel.erase(0, 1);
    if (rel.empty()) rel = ".";
    Fd fd(openat2_beneath(root_fd, rel.c_str(), O_PATH));
    if (fd) return fd;
    if (errno != ENOENT || !create) return resolve_error(path, errno);

    // Walk component by component, creating what is missing; each step is again resolved
    // beneath the root, so a symlink planted mid-way is still refused.
    Fd cur(openat2_beneath(root_fd, ".", O_PATH | O_DIRECTORY));
    if (!cur) return resolve_error(path, errno);
    auto parts = split(rel, '/');
    std::string walked;
    for (size_t i = 0; i < parts.size(); ++i) {
        const std::string& comp = parts[i];
        if (comp.empty() || comp == ".") continue;
        walked += "/" + comp;
        Fd next(openat2_beneath(cur.get(), comp.c_str(), O_PATH));
        if (!next && errno == ENOENT) {
            bool is_last = i + 1 == parts.size();
            if (is_last && last_is_file) {
                int f = ::openat(cur.get(), comp.c_str(),
                                 O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0644);
                if (f < 0 && errno != EEXIST) return sys_error("create " + walked + " in rootfs");
                if (f >= 0) ::close(f);
            } else if (::mkdirat(cur.get(), comp.c_str(), 0755) < 0 && errno != EEXIST) {
                return sys_error("mkdir " + walked + " in rootfs");
            }
            next.reset(openat2_beneath(cur.get(), comp.c_str(), O_PATH));
        }
        if (!next) return resolve_error(walked, errno);
        cur = std::move(next);
    }
    return cur;
}

unsigned long mount_flags_of(int fd) {
    struct statvfs sv {};
    if (::fstatvfs(fd, &sv) < 0) return 0;
    unsigned long f = 0;
    if (sv.f_flag & ST_RDONLY) f |= MS_RDONLY;
    if (sv.f_flag & ST_NOSUID) f |= MS_NOSUID;
    if (sv.f_flag & ST_NODEV) f |= MS_NODEV;
    if (sv.f_flag & ST_NOEXEC) f |= MS_NOEXEC;
    if (sv.f_flag & ST_NOATIME) f |= MS_NOATIME;
    if (sv.f_flag & ST_NODIRATIME) f |= MS_NODIRATIME;
    if (sv.f_flag & ST_RELATIME) f |= MS_RELATIME;
    return f;
}

constexpr unsigned long kRemountable = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME |
                                       MS_NODIRATIME | MS_RELATIME | MS_STRICTATIME |
                                       MS_SYNCHRONOUS | MS_MANDLOCK;

// Applies per-mount flags to the mount now on top of `path`. In a user namespace the kernel
// locks the flags the source mount had, so those are kept: dropping one would be EPERM.
static Status remount_bind(const std::string& where, int target_fd, unsigned long flags,
                           bool recursive) {
    unsigned long want = flags & kRemountable;
    if (recursive && (want & MS_RDONLY)) {
        // A recursive read-only bind must make every submount read-only too, which only
        // mount_setattr can do in one step.
        mount_attr attr{};
        attr.attr_set = MOUNT_ATTR_RDONLY;
        if (::syscall(SYS_mount_setattr, target_fd, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr,
                      sizeof attr) == 0)
            want &= ~MS_RDONLY;
    }
    if (!want) return {};
    unsigned long keep = mount_flags_of(target_fd);
    if (::mount(nullptr, fd_path(target_fd).c_str(), nullptr, MS_BIND | MS_REMOUNT | want | keep,
                nullptr) < 0)
        return sys_error("remount " + where);
    return {};
}

// A bind source with `source_beneath`: opened beneath that directory, no link followed.
static Result<Fd> open_bind_source(const Mount& m) {
    const std::string& top = m.source_beneath;
    if (m.source.compare(0, top.size(), top) != 0 ||
        (m.source.size() > top.size() && top != "/" && m.source[top.size()] != '/'))
        return sys_error("mount source " + m.source + ": not beneath " + top, EINVAL);
    Fd dir(::open(top.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!dir) return sys_error("open " + top);
    std::string rel = m.source.substr(top.size());
    while (!rel.empty() && rel.front() == '/')
        rel.erase(0, 1);
    if (rel.empty()) rel = ".";
    Fd fd = open_at2(dir.get(), rel.c_str(), O_PATH,
                     RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS);
    if (!fd && errno == ELOOP)
        return sys_error("mount source " + m.source + ": goes through a symbolic link", ELOOP);
    if (!fd) return sys_error("mount source " + m.source);
    return fd;
}

static bool source_is_dir(const Mount& m, int source_fd) {
    if (!m.bind()) return true;
    struct stat st {};
    if (source_fd >= 0) return ::fstat(source_fd, &st) < 0 || S_ISDIR(st.st_mode);
    return ::stat(m.source.c_str(), &st) < 0 || S_ISDIR(st.st_mode);
}

// Where a mount may not land. Inside a procfs: an image's `/data -> proc/self/fd` after the
// proc mount would put a volume over what the rest of the chain trusts as /proc/self/fd (its
// read-only, masking and console binds all name descriptors there), and a writable /proc/sys
// follows (CVE-2025-52881's pattern; runc's checkProcMount). And the proc mount itself goes
// on the image's own /proc directory, never through a link: the chain finds /proc by name.
static Status check_destination(int root_fd, const Mount& m, int target_fd) {
    struct statfs fs {};
    if (::fstatfs(target_fd, &fs) < 0)
        return sys_error("statfs mount destination " + m.destination);
    if (fs.f_type == PROC_SUPER_MAGIC)
        return sys_error("mount on " + m.destination +
                             ": resolves into /proc (a link in the image?); refused",
                         EPERM);
    if (!m.bind() && m.type == "proc") {
        Fd direct = open_at2(root_fd, "proc", O_PATH,
                             RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS);
        struct stat a {
        }, b{};
        if (!direct || ::fstat(direct.get(), &a) < 0 || ::fstat(target_fd, &b) < 0 ||
            a.st_dev != b.st_dev || a.st_ino != b.st_ino || !S_ISDIR(a.st_mode))
            return sys_error("mount proc on /proc: the image's /proc is not a plain directory",
                             EPERM);
    }
    return {};
}

static Status mount_one(int root_fd, const Mount& m, bool in_user_ns) {
    // Masked and read-only paths cover /proc only (oci.cc refuses the config already).
    if (!m.bind() && m.type == "proc" && m.destination != "/proc")
        return sys_error("mount proc on " + m.destination + ": a proc mount goes on /proc only",
                         EINVAL);
    Fd source;
    if (m.bind() && !m.source_beneath.empty()) {
        auto s = open_bind_source(m);
        if (!s) return s.error();
        source = std::move(*s);
    }
    auto target = open_in_root(root_fd, m.destination, true, !source_is_dir(m, source.get()));
    if (!target) return target.error();
    KEEL_TRY(check_destination(root_fd, m, target->get()));
    std::string where = fd_path(target->get());
    std::string what = fmt::format("mount {} on {}", m.bind() ? m.source : m.type, m.destination);

    if (m.bind()) {
        unsigned long rec = m.flags & MS_REC;
        std::string from = source ? fd_path(source.get()) : m.source;
        if (::mount(from.c_str(), where.c_str(), nullptr, MS_BIND | rec, nullptr) < 0)
            return sys_error(what);
    } else {
        std::string type = m.type == "cgroup" ? "cgroup2" : m.type;
        unsigned long flags = m.flags & ~(MS_BIND | MS_REC);
        auto mount_it = [&] {
            return ::mount(m.source.empty() ? type.c_str() : m.source.c_str(), where.c_str(),
                           type.c_str(), flags, m.data.empty() ? nullptr : m.data.c_str());
        };
        int rc = mount_it();
        // In a user namespace /sys may be the host's, bound with everything under it, and the
        // kernel refuses the same filesystem on top of itself (EBUSY): the cgroup2 hierarchy is
        // already at /sys/fs/cgroup. A small tmpfs in between makes it a new mount point (the
        // bound one is locked and cannot be unmounted from here).
        if (rc < 0 && errno == EBUSY && type == "cgroup2" && in_user_ns) {
            if (::mount("tmpfs", where.c_str(), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                        "size=4k,mode=755") < 0)
                return sys_error(what + " (tmpfs under it)");
            auto again = open_in_root(root_fd, m.destination, false, false);
            if (!again) return again.error();
            where = fd_path(again->get());
            rc = mount_it();
        }
        if (rc < 0) {
            // Without its own network (sysfs), IPC (mqueue) or cgroup namespace, a user
            // namespace may not mount these kernel filesystems; the host's are bound read-only
            // instead, as runc does.
            const char* host = type == "sysfs"     ? "/sys"
                               : type == "mqueue"  ? "/dev/mqueue"
                               : type == "cgroup2" ? "/sys/fs/cgroup"
                                                   : nullptr;
            if (!(errno == EPERM && in_user_ns && host)) return sys_error(what);
            if (::mount(host, where.c_str(), nullptr, MS_BIND | MS_REC, nullptr) < 0)
                return sys_error(what + " (bind fallback)");
            auto top = open_in_root(root_fd, m.destination, false, false);
            if (!top) return top.error();
            KEEL_TRY(remount_bind(m.destination, top->get(), flags, true));
        }
    }
    if (m.bind() || m.propagation) {
        // Re-open: the fd taken before mounting names the covered directory, not the new mount.
        auto top = open_in_root(root_fd, m.destination, false, false);
        if (!top) return top.error();
        if (m.bind()) KEEL_TRY(remount_bind(m.destination, top->get(), m.flags, m.flags & MS_REC));
        if (m.propagation &&
            ::mount(nullptr, fd_path(top->get()).c_str(), nullptr, m.propagation, nullptr) < 0)
            return sys_error("set propagation of " + m.destination);
    }
    return {};
}

Status prepare(const ContainerSpec& spec, bool in_user_ns) {
    // Nothing mounted from here on may propagate back to the host.
    unsigned long prop =
        spec.rootfs_propagation ? spec.rootfs_propagation : static_cast<unsigned long>(MS_PRIVATE);
    if (::mount(nullptr, "/", nullptr, MS_REC | prop, nullptr) < 0)
        return sys_error("make / private");
    // pivot_root needs the new root to be a mount point.
    if (::mount(spec.rootfs.c_str(), spec.rootfs.c_str(), nullptr, MS_BIND | MS_REC, nullptr) < 0)
        return sys_error("bind rootfs " + spec.rootfs);
    Fd root(::open(spec.rootfs.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!root) return sys_error("open rootfs " + spec.rootfs);
    for (const auto& m : spec.mounts)
        KEEL_TRY(mount_one(root.get(), m, in_user_ns));
    return devices::populate(root.get(), spec, in_user_ns);
}

Status pivot(const ContainerSpec& spec) {
    if (::chdir(spec.rootfs.c_str()) < 0) return sys_error("chdir " + spec.rootfs);
    // pivot_root(".", ".") stacks the old root on top of the new one at "."; unmounting "."
    // then removes the old root, so no directory for it is needed inside the container.
    if (::syscall(SYS_pivot_root, ".", ".") == 0) {
        if (::umount2(".", MNT_DETACH) < 0) return sys_error("detach old root");
    } else if (errno == EINVAL) {
        // The host root is the initramfs (rootfs), which cannot be pivoted away from. Move the
        // container root over "/" and chroot: the old root is then shadowed, not detached.
        if (::mount(".", "/", nullptr, MS_MOVE, nullptr) < 0)
            return sys_error("move rootfs onto / (initramfs host)");
        if (::chroot(".") < 0) return sys_error("chroot " + spec.rootfs);
    } else {
        return sys_error("pivot_root " + spec.rootfs);
    }
    if (::chdir("/") < 0) return sys_error("chdir /");
    return {};
}

static Status make_readonly(const std::string& p) {
    Fd fd(::open(p.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
    if (!fd) return errno == ENOENT ? Status{} : sys_error("open read-only path " + p);
    if (::mount(fd_path(fd.get()).c_str(), fd_path(fd.get()).c_str(), nullptr, MS_BIND | MS_REC,
                nullptr) < 0)
        return sys_error("bind read-only path " + p);
    Fd top(::open(p.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
    if (!top) return sys_error("reopen read-only path " + p);
    return remount_bind(p, top.get(), MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, true);
}

// The source of every masking bind: the container's /dev/null, opened once without following
// a link and checked to be the null device. The image decides what /dev/null is when no tmpfs
// is mounted on /dev, and a symlink there would make the masked files binds of whatever it
// names, writable (CVE-2025-31133).
static Result<Fd> open_dev_null() {
    Fd fd = open_at2(AT_FDCWD, "/dev/null", O_PATH | O_NOFOLLOW,
                     RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS);
    if (!fd) return sys_error("open /dev/null (without following symlinks) to mask paths");
    struct stat st {};
    if (::fstat(fd.get(), &st) < 0) return sys_error("stat /dev/null");
    if (!S_ISCHR(st.st_mode) || st.st_rdev != makedev(1, 3))
        return sys_error("/dev/null is not the null device (1:3): refusing to mask paths with it",
                         EINVAL);
    return fd;
}

static Status mask(const std::string& p, int null_fd) {
    Fd fd(::open(p.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
    if (!fd) return errno == ENOENT ? Status{} : sys_error("open masked path " + p);
    struct stat st {};
    if (::fstat(fd.get(), &st) < 0) return sys_error("stat masked path " + p);
    std::string where = fd_path(fd.get());
    int r = S_ISDIR(st.st_mode)
                ? ::mount("tmpfs", where.c_str(), "tmpfs",
                          MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=0,mode=0555")
                : ::mount(fd_path(null_fd).c_str(), where.c_str(), nullptr, MS_BIND, nullptr);
    if (r < 0) return sys_error("mask " + p);
    return {};
}

Status finish(const ContainerSpec& spec) {
    KEEL_TRY(sysctl::apply(spec));
    for (const auto& p : spec.readonly_paths)
        KEEL_TRY(make_readonly(p));
    if (!spec.masked_paths.empty()) {
        auto null = open_dev_null();
        if (!null) return null.error();
        for (const auto& p : spec.masked_paths)
            KEEL_TRY(mask(p, null->get()));
    }
    if (spec.readonly_root) {
        Fd root(::open("/", O_PATH | O_DIRECTORY | O_CLOEXEC));
        if (!root) return sys_error("open /");
        unsigned long keep = mount_flags_of(root.get());
        if (::mount(nullptr, "/", nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY | keep, nullptr) < 0)
            return sys_error("remount / read-only");
    }
    return {};
}

} // namespace keel::runtime::rootfs
