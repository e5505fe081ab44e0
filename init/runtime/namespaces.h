// Namespaces: which to create (clone flags), which to join (setns by path), and the user
// namespace id maps that the parent writes before it releases the child.
#pragma once

#include <sys/types.h>

#include "common/error.h"
#include "common/fd.h"
#include "runtime/spec.h"

namespace keel::runtime::ns {

// CLONE_NEW* flags for the namespaces the container gets fresh (no path).
int clone_flags(const ContainerSpec& spec);

// Parent side. Joining a PID or time namespace only affects children, so the parent joins
// it for the one clone it is about to make; the returned guard switches it back.
class ChildrenNsGuard {
  public:
    ChildrenNsGuard() = default;
    ChildrenNsGuard(ChildrenNsGuard&&) = default;
    ChildrenNsGuard& operator=(ChildrenNsGuard&&) = default;
    ~ChildrenNsGuard();

  private:
    friend Result<ChildrenNsGuard> enter_for_children(const ContainerSpec& spec);
    Fd saved_pid_, saved_time_;
};
Result<ChildrenNsGuard> enter_for_children(const ContainerSpec& spec);

// Parent side: writes /proc/PID/uid_map and gid_map.
Status write_id_maps(pid_t pid, const ContainerSpec& spec);

// Child side: setns() into every namespace given by path, the user namespace first (it
// decides what the others may do), PID and time excepted (see above).
Status join_by_path(const ContainerSpec& spec);

} // namespace keel::runtime::ns
