// `keel runtime`: the OCI runtime command line, a runc-compatible subset. One function per
// subcommand; create and run live in runtime_run.cc.
#pragma once

#include <string>
#include <vector>

#include "cli/options.h"
#include "runtime/state.h"

namespace keel::cli {

struct RuntimeContext {
    runtime::state::Store store;
    char** argv; // the original argv, for re-executing from a sealed memfd
};

// A runtime subcommand's options: mixed with its arguments, and long ones also with one dash
// (-bundle DIR), as runc's callers pass them.
inline VerbSpec runc_verb(std::string name, std::vector<OptionSpec> options) {
    return {std::move(name), std::move(options), false, true};
}

int runtime_main(const std::vector<std::string>& args, char** argv);

int runtime_create(RuntimeContext& ctx, const std::vector<std::string>& args);
int runtime_run(RuntimeContext& ctx, const std::vector<std::string>& args);

// Prints "keel runtime: <message>" on stderr and returns `code`.
int fail(const std::string& message, int code = 1);

} // namespace keel::cli
