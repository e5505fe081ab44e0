#include "common/quota.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/dqblk_xfs.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/quota.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include <fmt/format.h>

#include "common/fd.h"
#include "common/strings.h"

#ifndef PRJQUOTA
#define PRJQUOTA 2
#endif

namespace keel::quota {

Limits user_state_limits(uint64_t total_bytes, uint64_t total_inodes) {
    auto reserve = [](uint64_t total, uint64_t floor) {
        return std::min(std::max(total / 10, floor), total / 2);
    };
    return {total_bytes - reserve(total_bytes, 16ull << 20),
            total_inodes - reserve(total_inodes, 1024)};
}

namespace {

// Puts one inode in the project; directories also pass it on to what is created in them.
int set_project(int fd, bool dir, uint32_t project) {
    fsxattr fa{};
    if (::ioctl(fd, FS_IOC_FSGETXATTR, &fa) < 0) return errno;
    bool inherit = !dir || (fa.fsx_xflags & FS_XFLAG_PROJINHERIT);
    if (fa.fsx_projid == project && inherit) return 0;
    fa.fsx_projid = project;
    if (dir) fa.fsx_xflags |= FS_XFLAG_PROJINHERIT;
    return ::ioctl(fd, FS_IOC_FSSETXATTR, &fa) < 0 ? errno : 0;
}

// What was there before the bound (a state disk from an older Keel) joins the project too, so
// that it counts. Regular files and directories only: a symlink or a fifo cannot be opened for
// the ioctl, and a few stray inodes do not matter. `first` keeps the first error.
void adopt_tree(int dirfd, uint32_t project, Error& first, int depth = 0) {
    DIR* d = ::fdopendir(::dup(dirfd));
    if (!d) return;
    while (dirent* e = ::readdir(d)) {
        if (std::string_view(e->d_name) == "." || std::string_view(e->d_name) == "..") continue;
        struct stat st {};
        if (::fstatat(dirfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) continue;
        bool dir = S_ISDIR(st.st_mode);
        if (!dir && !S_ISREG(st.st_mode)) continue;
        Fd fd(::openat(dirfd, e->d_name,
                       O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | (dir ? O_DIRECTORY : 0)));
        if (!fd) continue;
        if (int err = set_project(fd.get(), dir, project); err && first.message.empty())
            first = sys_error(fmt::format("set the project of {}", e->d_name), err);
        // Deep enough for any image's layers; a deeper tree is not walked further.
        if (dir && depth < 64) adopt_tree(fd.get(), project, first, depth + 1);
    }
    ::closedir(d);
}

} // namespace

Status bound_dir(const std::string& device, const std::string& dir, uid_t owner,
                 const Limits& limits) {
    // Project quotas must be on before anything is moved into the project, or the usage the
    // kernel counts would miss it.
    fs_quota_stat qs{};
    if (::quotactl(QCMD(Q_XGETQSTAT, PRJQUOTA), device.c_str(), 0, reinterpret_cast<caddr_t>(&qs)) <
        0)
        return sys_error("project quotas on " + device);
    if (!(qs.qs_flags & FS_QUOTA_PDQ_ENFD))
        return plain_error(fmt::format(
            "project quotas on {} are counted but not enforced (mount it with prjquota)", device));
    if (::mkdir(dir.c_str(), 0755) == 0) {
        if (::chown(dir.c_str(), owner, owner) < 0) return sys_error("chown " + dir);
    } else if (errno != EEXIST) {
        return sys_error("create " + dir);
    }
    Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd) return sys_error("open " + dir);
    fsxattr fa{};
    if (::ioctl(fd.get(), FS_IOC_FSGETXATTR, &fa) < 0)
        return sys_error("read the project of " + dir);
    if (fa.fsx_projid != kUserStateProject || !(fa.fsx_xflags & FS_XFLAG_PROJINHERIT)) {
        // The top directory last: a walk cut short by a crash is done again at the next boot.
        Error first;
        adopt_tree(fd.get(), kUserStateProject, first);
        if (!first.message.empty()) return wrap(dir, first);
        if (int err = set_project(fd.get(), true, kUserStateProject))
            return sys_error("set the project of " + dir, err);
    }
    dqblk dq{};
    dq.dqb_bhardlimit = limits.bytes / QIF_DQBLKSIZE;
    dq.dqb_ihardlimit = limits.inodes;
    dq.dqb_valid = QIF_LIMITS;
    if (::quotactl(QCMD(Q_SETQUOTA, PRJQUOTA), device.c_str(), kUserStateProject,
                   reinterpret_cast<caddr_t>(&dq)) < 0)
        return sys_error(
            fmt::format("set the limits of project {} on {}", kUserStateProject, device));
    return {};
}

std::string device_of(const std::string& mountpoint) {
    std::string info;
    if (!read_file("/proc/self/mountinfo", info)) return {};
    std::string found;
    // mountinfo: "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS ... - FSTYPE SOURCE SUPEROPTS"; the
    // last line for a mount point is the one on top.
    for (const auto& line : split(info, '\n')) {
        auto dash = line.find(" - ");
        if (dash == std::string::npos) continue;
        auto left = split(line.substr(0, dash), ' ');
        auto right = split(line.substr(dash + 3), ' ');
        if (left.size() > 4 && right.size() > 1 && left[4] == mountpoint) found = right[1];
    }
    return found;
}

Usage usage(const std::string& dir) {
    Usage u;
    std::string mp = dir.substr(0, dir.rfind('/'));
    std::string device = device_of(mp);
    if (device.empty() || device[0] != '/') {
        u.why = mp + " is not a block device's filesystem";
        return u;
    }
    fs_quota_stat qs{};
    if (::quotactl(QCMD(Q_XGETQSTAT, PRJQUOTA), device.c_str(), 0, reinterpret_cast<caddr_t>(&qs)) <
            0 ||
        !(qs.qs_flags & FS_QUOTA_PDQ_ENFD)) {
        u.why = "no project quota enforced on " + device;
        return u;
    }
    Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    fsxattr fa{};
    if (!fd || ::ioctl(fd.get(), FS_IOC_FSGETXATTR, &fa) < 0 ||
        fa.fsx_projid != kUserStateProject) {
        u.why = fmt::format("{} is not in project {}", dir, kUserStateProject);
        return u;
    }
    dqblk dq{};
    if (::quotactl(QCMD(Q_GETQUOTA, PRJQUOTA), device.c_str(), kUserStateProject,
                   reinterpret_cast<caddr_t>(&dq)) < 0) {
        u.why = sys_error("read project quota").str();
        return u;
    }
    u.bytes = dq.dqb_curspace;
    u.bytes_limit = dq.dqb_bhardlimit * QIF_DQBLKSIZE;
    u.inodes = dq.dqb_curinodes;
    u.inodes_limit = dq.dqb_ihardlimit;
    u.enforced = u.bytes_limit > 0 && u.inodes_limit > 0;
    if (!u.enforced)
        u.why = fmt::format("project {} has no block or inode limit", kUserStateProject);
    return u;
}

} // namespace keel::quota
