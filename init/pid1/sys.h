// The seam between PID 1's logic and the kernel (dinit's bp_sys): every system call the
// supervision and shutdown state machine makes goes through Sys. Production uses RealSys;
// the unit tests use a fake that records calls and scripts results, so crash loops, zombie
// storms and shutdown ordering are tested without root, a VM or timing luck.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace keel::pid1 {

class Sys {
  public:
    virtual ~Sys() = default;
    // fork + exec; `notify_fd` (or -1) becomes fd contract::kNotifyFd (3) of the child. Returns the
    // pid or -errno.
    virtual pid_t spawn(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                        int notify_fd) noexcept = 0;
    // waitpid(-1, WNOHANG): pid > 0 with its status, 0 when children remain but none exited,
    // -1 when there are no children at all.
    virtual pid_t reap(int* status) noexcept = 0;
    virtual int kill(pid_t pid, int sig) noexcept = 0; // 0 or errno; pid -1 means everyone
    virtual int64_t now_ms() noexcept = 0;             // monotonic
    virtual bool write_file(const std::string& path, const std::string& data) noexcept = 0;
    virtual void sync() noexcept = 0;
    virtual std::vector<std::string> mount_points() noexcept = 0; // in mount order
    virtual int unmount(const std::string& path) noexcept = 0;    // 0 or errno
    virtual int remount_readonly(const std::string& path) noexcept = 0;
    virtual int reboot(int how) noexcept = 0;                 // RB_POWER_OFF / RB_AUTOBOOT
    virtual void print(const std::string& line) noexcept = 0; // to the console
};

class RealSys final : public Sys {
  public:
    pid_t spawn(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                int notify_fd) noexcept override;
    pid_t reap(int* status) noexcept override;
    int kill(pid_t pid, int sig) noexcept override;
    int64_t now_ms() noexcept override;
    bool write_file(const std::string& path, const std::string& data) noexcept override;
    void sync() noexcept override;
    std::vector<std::string> mount_points() noexcept override;
    int unmount(const std::string& path) noexcept override;
    int remount_readonly(const std::string& path) noexcept override;
    int reboot(int how) noexcept override;
    void print(const std::string& line) noexcept override;
};

} // namespace keel::pid1
