// /dev for a container: the default nodes (null, zero, full, random, urandom, tty), the
// standard symlinks, and any extra devices from the spec. Child side, before pivot_root.
#pragma once

#include "common/error.h"
#include "runtime/spec.h"

namespace keel::runtime::devices {

// In a user namespace mknod is not allowed, so nodes are bind mounts of the host's.
Status populate(int root_fd, const ContainerSpec& spec, bool in_user_ns);

} // namespace keel::runtime::devices
