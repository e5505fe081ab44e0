// The mounts and /proc protections a container gets by default, kept in one place for their
// two producers: keeld's services (service/service_spec.cc, a ContainerSpec directly) and
// `keel spec` (oci.cc's default config.json, as OCI mount options).
#pragma once

#include <string>
#include <vector>

#include "runtime/spec.h"

namespace keel::runtime::defaults {

// A service's: proc, a /dev tmpfs, a private devpts, /dev/shm, /dev/mqueue, a read-only
// sysfs and a read-only cgroup2 (the service makes the last writable when it delegates).
// One Mount from its parts (data: the filesystem options).
Mount mnt(const char* dest, const char* type, const char* src, unsigned long flags,
          const char* data = "");

std::vector<Mount> mounts();

// `keel spec`'s config.json: the same list with the differences it has always had, kept
// deliberately (changing either changes a behaviour):
//  - proc carries no options there (runc's default document lists it bare); a service's
//    proc is nosuid, nodev, noexec;
//  - devpts gets gid=5 ("tty" in the rootfs) unless rootless, where only the caller's own
//    gid is mapped;
//  - rootless: /sys is a read-only recursive bind of the host's, since a user namespace
//    without its own network namespace may not mount sysfs.
std::vector<Mount> oci_mounts(bool rootless);

// A mount's flags and data as OCI options, in config.json's order: "rbind", "nosuid",
// "noexec", "nodev", "strictatime", "relatime", "ro", then the data's comma-separated items.
std::vector<std::string> oci_options(const Mount& m);

// Hidden (/dev/null over files, an empty tmpfs over directories) and made read-only in
// /proc and /sys; the same for services and `keel spec`.
const std::vector<std::string>& masked_paths();
const std::vector<std::string>& readonly_paths();

} // namespace keel::runtime::defaults
