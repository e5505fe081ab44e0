// The bound on the user runtime's share of the state partition: an ext4 project quota on
// /var/lib/keel/user, limiting both blocks and inodes, so that a workload filling the disk (or
// its inode table) leaves room for the system's own state (/var/lib/keel/config.yml, the
// system services' logs).
//
// PID 1 sets it up after mounting the partition (with `prjquota`) and before keeld starts the
// user runtime; `keel audit` reads it back. Root in the initial user namespace
// (CAP_SYS_RESOURCE) is not held to it; the user runtime, root only in its own user
// namespace, is, and it cannot change a file's project (the kernel allows that only from the
// initial user namespace).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "common/error.h"

namespace keel::quota {

// The project id /var/lib/keel/user and everything below it carry.
constexpr uint32_t kUserStateProject = 1;

struct Limits {
    uint64_t bytes = 0;
    uint64_t inodes = 0;
};

// What the user runtime may use of a filesystem of `total_bytes` and `total_inodes`: all but
// a reserve for the system of max(10%, 16 MiB) of the blocks and max(10%, 1024) of the
// inodes, the reserve never more than half.
Limits user_state_limits(uint64_t total_bytes, uint64_t total_inodes);

// Puts `dir` (created if missing, owned by `owner`) and what it holds in project
// kUserStateProject, inherited by whatever is created below it, and sets the project's hard
// limits from `limits`. `device` is the filesystem's block device; project quotas must be
// enforced on it (mounted with prjquota), or this fails with ESRCH.
Status bound_dir(const std::string& device, const std::string& dir, uid_t owner,
                 const Limits& limits);

struct Usage {
    bool enforced = false; // the project quota is on and the directory is in the project
    std::string why;       // when it is not
    uint64_t bytes = 0, bytes_limit = 0, inodes = 0, inodes_limit = 0;
};
// Reads back the bound on `dir`: its project, and that project's usage and limits.
Usage usage(const std::string& dir);

// The block device mounted at `mountpoint` (from /proc/self/mountinfo), or "".
std::string device_of(const std::string& mountpoint);

} // namespace keel::quota
