// Seccomp: a profile is data (config/seccomp/default.yml, or linux.seccomp of an OCI
// config.json); the parent compiles it to BPF once with libseccomp, and the child only
// installs the finished program, as late as possible before exec.
#pragma once

#include <linux/filter.h>

#include <string>
#include <vector>

#include "common/error.h"
#include "runtime/spec.h"

namespace keel::runtime::seccomp {

// Loads a profile in Keel's YAML format. Rules may be conditional on capabilities
// (`caps_any` / `caps_none`) or on the architecture; they are resolved here against the
// capabilities the container will hold (`granted`, CAP_* numbers), so the result is final.
// Errors name the file, line and key.
Result<SeccompProfile> load_profile(const std::string& path, const std::vector<int>& granted);
Result<SeccompProfile> parse_profile(const std::string& yaml_text, const std::string& origin,
                                     const std::vector<int>& granted);

struct Program {
    std::vector<sock_filter> filter;
    unsigned flags = 0; // SECCOMP_FILTER_FLAG_*
};

// Compiles with libseccomp. Unknown syscall names are skipped (an older kernel or libseccomp
// may not know a newer call); an unknown action, operator, architecture or flag is an error.
Result<Program> compile(const SeccompProfile& profile);
// The same, remembered for the last 16 distinct profiles in this process (keeld).
Result<Program> compile_cached(const SeccompProfile& profile);

// Child side: installs the compiled program with seccomp(2). Returns 0 or an errno value.
// Async-signal-safe: no allocation.
int install(const Program& prog) noexcept;

} // namespace keel::runtime::seccomp
