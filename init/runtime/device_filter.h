// The device cgroup: which device nodes a container may open or create. On cgroup v2 that is an
// eBPF program of type BPF_PROG_TYPE_CGROUP_DEVICE attached to the container's cgroup; the
// kernel runs it on every open and mknod of a device node by a process in that cgroup (or
// below it), also on a hybrid host where the devices controller lives in v1. Parent side: the
// program is attached before the child is cloned into the cgroup, so the container never runs
// a moment without it, and goes away with the cgroup.
//
// How a list of rules decides, as runc's does: each access asked for (read, write, mknod) is
// decided by the last rule that matches the device (type, major, minor; 'a' and -1 match any)
// and includes that access; no matching rule means deny. An open for read and write needs
// both.
#pragma once

#include <linux/bpf.h>

#include <cstdint>
#include <vector>

#include "common/error.h"
#include "runtime/spec.h"

namespace keel::runtime::device_filter {

// What the container gets: deny-all; every node of spec.devices (linux.devices, a service's
// devices:) with all access; the spec's own rules (linux.resources.devices) in order; last the
// runtime's default set (runc's: mknod of any node, null, zero, full, random, urandom, tty,
// console, ptmx, the ptys, tun). So a config without rules can use the nodes it lists, while
// its rules can still narrow them: Docker's `--device /dev/x:/dev/x:r` writes the node and an
// "r" rule, and an engine's leading deny-all takes back what it does not allow again (as in
// runc, which never allows linux.devices by itself). The defaults come after the spec's
// rules, as in runc, so no rule takes /dev/null away from a container.
std::vector<DeviceRule> effective_rules(const ContainerSpec& spec);

// The decision of `rules` for one access; type is 'c' or 'b', access DeviceRule bits (mknod, read,
// write).
bool allows(const std::vector<DeviceRule>& rules, char type, uint32_t major, uint32_t minor,
            unsigned access);

// The same decision as an eBPF program over struct bpf_cgroup_dev_ctx (returns 1: allow).
Result<std::vector<bpf_insn>> compile(const std::vector<DeviceRule>& rules);

// Whether this process can install a device program: loading one needs CAP_SYS_ADMIN (or
// CAP_BPF) in the initial user namespace. A runtime in a user namespace of its own (the user
// runtime, `keel runtime` rootless) cannot, and need not: its containers cannot make device
// nodes (mknod needs CAP_MKNOD in the initial user namespace) and whatever filesystem they
// mount is nodev, so the nodes the runtime binds into their /dev are all they can open.
bool enforced_here();

// Loads the program for `rules` and attaches it to the cgroup (a directory fd, O_PATH will
// do) with BPF_F_ALLOW_MULTI, so programs of ancestors still apply. The program's fd is closed
// again: the attachment holds the program until the cgroup is removed. Errors name the step
// (compile, load, attach) and, for a refused load, the verifier's last word.
Status attach(int cgroup_fd, const std::vector<DeviceRule>& rules);

} // namespace keel::runtime::device_filter
