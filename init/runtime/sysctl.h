// linux.sysctl: which kernel parameters a container may set, and setting them. A sysctl the
// container's own namespaces do not scope is the host's (kernel.core_pattern is a host
// command line run as root), so only those of an IPC, UTS or network namespace the container
// owns are allowed, as runc allows.
#pragma once

#include <optional>
#include <string>

#include "common/error.h"
#include "runtime/spec.h"

namespace keel::runtime::sysctl {

// Why `key` may not be set in a container with `spec`'s namespaces, or nullopt if it may.
std::optional<std::string> refusal(const std::string& key, const ContainerSpec& spec);

// Child side, after pivot_root: writes every spec.sysctl through the container's own procfs
// (/proc, reached without a symlink, checked to be a procfs, and no other mount on the way).
Status apply(const ContainerSpec& spec);

} // namespace keel::runtime::sysctl
