#include "pid1/sys.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>

#include "common/clock.h"
#include "common/contract.h"
#include "common/fd.h"
#include "common/strings.h"

namespace keel::pid1 {

pid_t RealSys::spawn(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                     int notify_fd) noexcept {
    try {
        std::vector<char*> av, ev;
        for (const auto& a : argv)
            av.push_back(const_cast<char*>(a.c_str()));
        av.push_back(nullptr);
        for (const auto& e : env)
            ev.push_back(const_cast<char*>(e.c_str()));
        ev.push_back(nullptr);
        pid_t pid = ::fork();
        if (pid < 0) return -errno;
        if (pid == 0) {
            // Our signals are blocked for the signalfd; the child starts clean.
            sigset_t none;
            sigemptyset(&none);
            ::sigprocmask(SIG_SETMASK, &none, nullptr);
            ::setsid();
            // The OOM killer all but spares keeld (PID 1 it never picks): a machine out of
            // memory loses a workload, not its supervisor. -900, not -1000: a keeld that leaks
            // can still be stopped. Containers start from 0 again (service::to_container).
            if (int fd = ::open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC); fd >= 0) {
                if (::write(fd, "-900", 4) < 0) {
                }
                ::close(fd);
            }
            if (notify_fd >= 0) {
                if (notify_fd == contract::kNotifyFd)
                    ::fcntl(contract::kNotifyFd, F_SETFD, 0);
                else
                    ::dup2(notify_fd, contract::kNotifyFd);
            }
            ::execve(av[0], av.data(), ev.data());
            ::_exit(127);
        }
        return pid;
    } catch (...) {
        return -ENOMEM;
    }
}

pid_t RealSys::reap(int* status) noexcept {
    pid_t p = ::waitpid(-1, status, WNOHANG);
    if (p < 0) return errno == ECHILD ? -1 : 0;
    return p;
}

int RealSys::kill(pid_t pid, int sig) noexcept {
    return ::kill(pid, sig) < 0 ? errno : 0;
}

int64_t RealSys::now_ms() noexcept {
    return keel::now_ms();
}

bool RealSys::write_file(const std::string& path, const std::string& data) noexcept {
    try {
        return keel::write_file(path.c_str(), data);
    } catch (...) {
        return false;
    }
}

void RealSys::sync() noexcept {
    ::sync();
}

std::vector<std::string> RealSys::mount_points() noexcept {
    std::vector<std::string> out;
    try {
        std::string text;
        if (!read_file("/proc/self/mountinfo", text)) return out;
        for (const auto& line : split(text, '\n')) {
            auto f = split(line, ' ');
            if (f.size() > 4) out.push_back(f[4]);
        }
    } catch (...) {
    }
    return out;
}

int RealSys::unmount(const std::string& path) noexcept {
    return ::umount2(path.c_str(), 0) < 0 ? errno : 0;
}

int RealSys::remount_readonly(const std::string& path) noexcept {
    return ::mount(nullptr, path.c_str(), nullptr, MS_REMOUNT | MS_RDONLY, nullptr) < 0 ? errno : 0;
}

int RealSys::reboot(int how) noexcept {
    return ::reboot(how) < 0 ? errno : 0;
}

void RealSys::print(const std::string& line) noexcept {
    std::string l = line + "\n";
    ssize_t ignored = ::write(1, l.data(), l.size());
    (void)ignored;
}

} // namespace keel::pid1
