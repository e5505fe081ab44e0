// A ContainerSpec becomes a running container here: the ordered chain of every subsystem's
// parent side and child side. Supervision is direct: the caller holds a pidfd, no shim.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>

#include "common/error.h"
#include "common/fd.h"
#include "runtime/spec.h"

namespace keel::runtime {

struct ExitStatus {
    int code = 0;   // exit code when the process exited
    int signal = 0; // the signal that killed it, else 0
    bool core = false;
    int shell_code() const { return signal ? 128 + signal : code; }
    std::string describe() const; // "exited with 3", "killed by SIGKILL"
};

// Why a container did not start: the stage of the child-side chain that failed ("pivot-root",
// "set-capabilities", "exec", ...) and its error. str(): "set-capabilities: EPERM (...)".
struct StartError {
    std::string stage;
    Error error;
    std::string str() const;
};

struct StartOptions {
    // OCI create: the child finishes every step but exec, reports ready, then blocks reading
    // this fd (its exec fifo) until `start` writes to it.
    int hold_fd = -1;
    // Kill the container if the starting process dies before the container has started.
    bool die_with_parent = true;
};

class PendingStart;

class Container {
  public:
    Container() = default;
    Container(Container&&) = default;
    Container& operator=(Container&&) = default;

    // Starts the container. On failure nothing is left behind: no process, no cgroup.
    static Result<Container> start(const ContainerSpec& spec, const StartOptions& opts = {},
                                   StartError* why = nullptr);
    // The same in two halves, for event loops that start many containers at once: spawn()
    // returns as soon as the child runs (its setup and exec go on in parallel), and the
    // PendingStart's fd becomes readable when the child has exec'd or failed. With
    // spec.console, spawn() first waits for the child's terminal (its root set up).
    static Result<PendingStart> spawn(const ContainerSpec& spec, const StartOptions& opts = {},
                                      StartError* why = nullptr);

    pid_t pid() const { return pid_; }
    int pidfd() const { return pidfd_.get(); }
    const std::string& cgroup_path() const { return cgroup_; }

    Status signal(int sig) const;
    // Blocks until the container's init exits (EINTR is retried unless `interruptible`).
    Result<ExitStatus> wait();
    // Non-blocking: the status if it has exited (for event loops polling the pidfd).
    std::optional<ExitStatus> try_wait();
    // Sends `sig`, waits up to `timeout`, then SIGKILL.
    Result<ExitStatus> stop(int sig, std::chrono::milliseconds timeout);
    // After exit: removes the cgroup (killing anything left in it).
    Status cleanup();
    // Gives up ownership without waiting (OCI create: the process outlives us).
    void detach();
    // spec.console: the master of the terminal the container made for itself (once).
    Fd take_console() { return std::move(console_); }

  private:
    friend class PendingStart;
    pid_t pid_ = -1;
    Fd pidfd_;
    std::string cgroup_;
    bool reaped_ = false;
    Fd console_;
};

class PendingStart {
  public:
    PendingStart() = default;
    PendingStart(PendingStart&&) = default;
    PendingStart& operator=(PendingStart&&) = default;
    int fd() const { return report_.get(); } // readable once finish() will not block
    pid_t pid() const { return c_.pid(); }
    Fd take_console() { return c_.take_console(); }
    // The started container, or the stage that failed (then nothing is left behind).
    Result<Container> finish(StartError* why = nullptr);

  private:
    friend class Container;
    Container c_;
    Fd report_;
};

// CVE-2019-5736: a container must never be able to write the runtime's binary through
// /proc/PID/exe. Before starting containers, the runtime re-executes itself from a sealed
// memfd copy; a no-op when already running from one, or when its binary is reached through a
// read-only mount (Keel's image binds /usr/bin/keel read-only on itself at boot: a write
// through /proc/PID/exe then fails with EROFS, as with runc's read-only bind). The copy costs
// the binary's size in memory per process, and under emulation most of a `keel runtime run`.
Status reexec_from_sealed_memfd(char** argv);
bool running_from_sealed_memfd();
bool running_from_read_only_mount();
// Whether this process runs in a user namespace other than the initial one (a nested runtime).
bool in_child_user_namespace();

} // namespace keel::runtime
