// Root filesystem, child side: a private mount tree, the bundle rootfs bound onto itself, the
// spec's mounts resolved safely inside it, pivot_root, then masked and read-only paths.
#pragma once

#include <string>

#include "common/error.h"
#include "common/fd.h"
#include "runtime/spec.h"

namespace keel::runtime::rootfs {

// Before pivot_root: propagation, rootfs bind, every mount and device node.
Status prepare(const ContainerSpec& spec, bool in_user_ns);
// pivot_root into the prepared rootfs (MS_MOVE + chroot where / is the initramfs).
Status pivot(const ContainerSpec& spec);
// After pivot_root: sysctls, read-only and masked paths, read-only root.
Status finish(const ContainerSpec& spec);

// Opens `path` (absolute, inside the root `root_fd`) with O_PATH, refusing any resolution that
// leaves the root: a symlink pointing outside, or "..", gives EXDEV. Missing components are
// created as directories (the last one as a file when `last_is_file`) when `create` is set.
Result<Fd> open_in_root(int root_fd, const std::string& path, bool create, bool last_is_file);

// MS_* flags of the mount at an fd ("/proc/self/fd/N"), for remounts that must keep the
// flags the kernel locks in a user namespace (nosuid, nodev, noexec, atime).
unsigned long mount_flags_of(int fd);

std::string fd_path(int fd); // "/proc/self/fd/N"

} // namespace keel::runtime::rootfs
