#pragma once

namespace keel::pid1 {

// The `init` personality: PID 1. Never returns on a real boot. `--test` runs it as PID 1 of
// fresh namespaces on a dev host: no modules, sysctls, state partition or reboot(2), and it
// exits once shut down.
int init_main(int argc, char** argv) noexcept;

} // namespace keel::pid1
