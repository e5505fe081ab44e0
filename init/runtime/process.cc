#include "runtime/process.h"

#include <fcntl.h>
#include <grp.h>
#include <linux/close_range.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <fmt/format.h>

#include "common/fd.h"
#include "common/strings.h"

namespace keel::runtime::process {

int set_rlimits(const ContainerSpec& spec) noexcept {
    for (const auto& r : spec.rlimits) {
        rlimit lim{r.soft, r.hard};
        if (::setrlimit(r.resource, &lim) < 0) return errno;
    }
    return 0;
}

int set_oom_score_adj(const ContainerSpec& spec) noexcept {
    if (!spec.oom_score_adj) return 0;
    char buf[16];
    int n = snprintf(buf, sizeof buf, "%d", *spec.oom_score_adj);
    Fd fd(::open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC));
    if (!fd || ::write(fd.get(), buf, static_cast<size_t>(n)) != n) return errno;
    return 0;
}

int set_ids(const ContainerSpec& spec) noexcept {
    if (::prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0) return errno;
    // setgroups is refused in a user namespace whose setgroups file says deny; an empty list
    // is then the only correct state anyway.
    if (::setgroups(spec.additional_gids.size(), spec.additional_gids.data()) < 0 &&
        !(errno == EPERM && spec.additional_gids.empty()))
        return errno;
    if (::setresgid(spec.gid, spec.gid, spec.gid) < 0) return errno;
    if (::setresuid(spec.uid, spec.uid, spec.uid) < 0) return errno;
    if (::prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0) return errno;
    return 0;
}

int install_fds(int stdio[3], const std::vector<int>& extra, int* keep, size_t nkeep) noexcept {
    // First lift every source fd and every fd we keep above the target range, so that
    // dup2 into 0..n never overwrites a source still to be placed.
    int top = static_cast<int>(3 + extra.size());
    auto lift = [&](int& fd) -> int {
        if (fd < 0 || fd >= top) return 0;
        int moved = ::fcntl(fd, F_DUPFD_CLOEXEC, top);
        if (moved < 0) return errno;
        fd = moved;
        return 0;
    };
    for (size_t i = 0; i < nkeep; ++i)
        if (int e = lift(keep[i])) return e;
    int src[3] = {stdio[0], stdio[1], stdio[2]};
    std::vector<int> xs(extra);
    for (int& fd : src)
        if (int e = lift(fd)) return e;
    for (int& fd : xs)
        if (int e = lift(fd)) return e;
    for (int i = 0; i < 3; ++i)
        if (src[i] >= 0 && ::dup2(src[i], i) < 0) return errno;
    for (size_t i = 0; i < xs.size(); ++i)
        if (::dup2(xs[i], static_cast<int>(3 + i)) < 0) return errno;
    return 0;
}

int close_others(size_t nextra) noexcept {
    unsigned first = static_cast<unsigned>(3 + nextra);
    if (::syscall(SYS_close_range, first, ~0U, CLOSE_RANGE_CLOEXEC) < 0) return errno;
    return 0;
}

Result<std::string> find_executable(const ContainerSpec& spec) {
    if (spec.args.empty()) return plain_error("no command to run");
    const std::string& cmd = spec.args[0];
    auto check = [](const std::string& p) -> int {
        struct stat st {};
        if (::stat(p.c_str(), &st) < 0) return errno;
        if (S_ISDIR(st.st_mode)) return EISDIR;
        if (!(st.st_mode & 0111)) return EACCES;
        return 0;
    };
    if (cmd.find('/') != std::string::npos) {
        if (int e = check(cmd)) return sys_error(cmd, e);
        return cmd;
    }
    std::string path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    for (const auto& e : spec.env)
        if (starts_with(e, "PATH=")) path = e.substr(5);
    int first_err = ENOENT;
    for (const auto& dir : split(path, ':')) {
        std::string p = (dir.empty() ? "." : dir) + "/" + cmd;
        int e = check(p);
        if (e == 0) return p;
        if (e != ENOENT && first_err == ENOENT) first_err = e;
    }
    return sys_error(fmt::format("{} not found in PATH {}", cmd, path), first_err);
}

} // namespace keel::runtime::process
