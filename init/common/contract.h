// The contract between PID 1 and keeld, and between keeld and a `ready: notify` service: the
// fd a readiness message goes to, the message, and what each signal means to each side. Both
// sides include this header; a shell service (services/sshd) and scripts/bench-services speak
// it by hand.
#pragma once

#include <signal.h>

#include <string_view>

namespace keel::contract {

// The notify fd: PID 1 starts keeld with the write end of its notify pipe as this fd, and keeld
// gives a `ready: notify` service the write end of the service's own pipe as the same fd (the
// first of the runtime's extra_fds).
inline constexpr int kNotifyFd = 3;
// Named to a `ready: notify` service in its environment: KEEL_NOTIFY_FD=3.
inline constexpr std::string_view kNotifyFdEnv = "KEEL_NOTIFY_FD";
// The readiness word. keeld writes it as a line (kReadyLine) once every enabled service has
// started; PID 1 takes a line that is exactly the word; keeld takes a service's message that
// holds the word anywhere.
inline constexpr std::string_view kReady = "READY";
inline constexpr std::string_view kReadyLine = "READY\n";

// Signals to PID 1. keeld sends kPid1Poweroff for `keel os poweroff` and kPid1Reboot for
// `keel os reboot`; kPid1Reboot is also what the kernel sends for Ctrl-Alt-Del (PID 1 turns
// the hard reboot off with RB_DISABLE_CAD). SIGTERM (a container manager stopping a Keel
// container) and SIGPWR (power failure) mean poweroff too.
inline constexpr int kPid1Poweroff = SIGUSR2;
inline constexpr int kPid1Reboot = SIGINT;
inline constexpr int kPid1Terminate = SIGTERM;
inline constexpr int kPid1PowerFail = SIGPWR;

// Signals to keeld: kKeeldStop stops every workload and service, in reverse start order, then
// keeld exits; PID 1 sends it at shutdown. kKeeldInterrupt (Ctrl-C on a keeld run by hand)
// means the same.
inline constexpr int kKeeldStop = SIGTERM;
inline constexpr int kKeeldInterrupt = SIGINT;

} // namespace keel::contract
