// The boot stages keel-init runs, in order, before it starts keeld. Each returns what it did
// for the console; only "mounts" can be fatal (it sends the machine to recovery).
#pragma once

#include <sys/types.h>

#include <map>
#include <string>
#include <vector>

#include "common/error.h"
#include "config/modules_list.h"

namespace keel::pid1::boot {

// /proc, /sys, /dev (devtmpfs), /dev/pts, /dev/shm, /run, /tmp, cgroup2 (nsdelegate),
// securityfs; / made shared-private as the runtime needs. Mounts already there are kept.
Status mount_early();
// Binds the running keel binary read-only on itself (CVE-2019-5736; see the runtime).
Status protect_binary();

struct ModuleReport {
    std::vector<std::string> loaded, missing, failed; // failed: "name: EINVAL (...)"
    std::map<std::string, int64_t> load_us;           // time in finit_module, for keel.debug
};
// Loads the allow-list from /lib/modules/<release>/.
ModuleReport load_modules(const config::modules::AllowList& list);
Status lock_modules(); // kernel.modules_disabled=1

Status set_hostname(const std::string& name);
Status loopback_up();

// Mounts the ext4 filesystem labelled `label` at /var/lib/keel; returns the device, or an
// error when there is none (the caller then mounts a tmpfs there).
Result<std::string> mount_state(const std::string& label);
Status mount_state_tmpfs();
// Bounds /var/lib/keel/user (the user runtime's images, layers, volumes and logs) to all but a
// reserve of the state partition's blocks and inodes, with a project quota (common/quota.h).
// `owner`: user_runtime.host_id, who owns the directory when it is created here.
Status bound_user_state(const std::string& device, uid_t owner);

} // namespace keel::pid1::boot
