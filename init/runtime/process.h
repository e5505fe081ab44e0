// The container process's own attributes, child side: rlimits, ids, stdio and inherited fds,
// and the executable lookup. Each returns 0 or an errno value.
#pragma once

#include <string>

#include "common/error.h"
#include "runtime/spec.h"

namespace keel::runtime::process {

int set_rlimits(const ContainerSpec& spec) noexcept;
int set_oom_score_adj(const ContainerSpec& spec) noexcept;

// setgroups, setresgid, setresuid, keeping the permitted capabilities across the uid change
// (caps::apply sets the final sets afterwards).
int set_ids(const ContainerSpec& spec) noexcept;

// Places stdio on 0-2 and extra fds on 3.., given as parent fds already open in the child.
// `avoid` lists fds the child still needs (its report pipe); they are moved out of the way.
int install_fds(int stdio[3], const std::vector<int>& extra, int* keep, size_t nkeep) noexcept;

// Everything from 3 + extra on becomes close-on-exec, so nothing the runtime holds leaks.
int close_others(size_t nextra) noexcept;

// Finds args[0] in the container's PATH (from its env, else the default PATH), as execvp
// would but with the container's environment.
Result<std::string> find_executable(const ContainerSpec& spec);

} // namespace keel::runtime::process
