// Capabilities with libcap. The child applies the five sets exactly as specified.
#pragma once

#include <string>
#include <vector>

#include "runtime/spec.h"

namespace keel::runtime::caps {

// Highest capability number the running kernel knows (/proc/sys/kernel/cap_last_cap).
int last_cap() noexcept;

// Docker's default set: CHOWN, DAC_OVERRIDE, FSETID, FOWNER, MKNOD, NET_RAW, SETGID, SETUID,
// SETFCAP, SETPCAP, NET_BIND_SERVICE, SYS_CHROOT, KILL, AUDIT_WRITE.
std::vector<int> docker_default();
// The same set by name ("CAP_CHOWN", ...), in that order: what `keel run` grants a workload
// and what `keel audit` counts as beyond the default.
const std::vector<std::string>& docker_default_names();

// Child side, in two steps around setuid: drop_bounding() before changing ids (it needs
// CAP_SETPCAP), apply() after. Both return 0 or an errno value and do not allocate.
int drop_bounding(const Capabilities& c) noexcept;
// `also_held`, when not -1, is one more capability kept permitted and effective on top of the
// sets: the one the chain still needs after this step (CAP_SYS_ADMIN to install a seccomp
// filter without no_new_privs). execve computes the program's sets without the permitted set
// before it (from inheritable, ambient, bounding and the file), so it does not survive exec.
int apply(const Capabilities& c, int also_held = -1) noexcept;

} // namespace keel::runtime::caps
