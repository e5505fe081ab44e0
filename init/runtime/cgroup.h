// cgroup v2, parent side: the container's cgroup is created with its limits before the child
// exists, the child is cloned straight into it (CLONE_INTO_CGROUP), and it is removed after
// the container's last process is gone.
#pragma once

#include <sys/types.h>

#include <string>

#include "common/error.h"
#include "common/fd.h"
#include "runtime/spec.h"

namespace keel::runtime::cgroup {

// Where cgroup2 is mounted ("/sys/fs/cgroup", or "/sys/fs/cgroup/unified" on a hybrid host);
// empty when it is not.
const std::string& mountpoint();

class Cgroup {
  public:
    Cgroup() = default;
    const std::string& path() const { return path_; } // absolute, under mountpoint()
    int dir_fd() const { return dir_.get(); }
    bool valid() const { return dir_.valid(); }
    // Gives the subtree to a nested runtime: its root (host uid/gid) owns the directory and the
    // files the delegation guide lists.
    Status delegate_to(uid_t uid, gid_t gid) const;

  private:
    friend Result<Cgroup> create(const std::string&, const Resources&);
    friend Result<Cgroup> open_existing(const std::string& abs_path);
    std::string path_;
    Fd dir_;
};

// Creates `rel` (below the cgroup2 root), enabling the controllers the limits need in every
// ancestor, and writes the limits. A missing controller is an error naming it.
Result<Cgroup> create(const std::string& rel, const Resources& limits);
Result<Cgroup> open_existing(const std::string& abs_path);

// Kills whatever is left (cgroup.kill, or SIGKILL to each pid where cgroup.kill is missing),
// waits briefly for it to empty, and removes the directory. A missing directory is success.
Status destroy(const std::string& abs_path);

// Reads memory.events "oom_kill" (0 when unavailable).
long oom_kills(const std::string& abs_path);

} // namespace keel::runtime::cgroup
