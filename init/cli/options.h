// The CLI's one option parser. Each verb (`keel run`, `keel service logs`, `keel runtime
// create`...) describes its options in a table, as crun does; the parser knows the rest:
// "--" ends the options, `--opt=value` and `--opt value`, short clusters (`-it`, `-dit`), and
// an unknown option is an error that names it and suggests the closest known one.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/error.h"

namespace keel::cli {

struct OptionSpec {
    std::string name;                      // long name without dashes; values are kept under it
    std::string shorts = {};               // its one-letter forms: "d" for -d
    bool takes_value = false;              // --name VALUE / --name=VALUE / -nVALUE
    bool repeatable = false;               // -e A=1 -e B=2: values() has both
    std::vector<std::string> aliases = {}; // other long names: "network" for "net"
    std::string help = {};
};

struct VerbSpec {
    std::string name; // "run", "service logs": for the reader; errors are prefixed by the caller
    std::vector<OptionSpec> options;
    // Options end at the first argument: what follows it (a container's command, a config
    // VALUE such as -5) belongs to it, not to keel.
    bool options_first = false;
    // runc's callers pass long options with one dash (-bundle DIR): a single dash then starts
    // a long name unless one letter follows, and there are no short clusters.
    bool single_dash_long = false;
};

class Options {
  public:
    // Errors: "unknown option --nmae (did you mean --name?)", "option --name needs a value",
    // "option --rm takes no value".
    static Result<Options> parse(const VerbSpec& verb, const std::vector<std::string>& argv);

    bool flag(const std::string& name) const { return values_.count(name) > 0; }
    // The last value given (a non-repeatable option given twice keeps the last, as getopt).
    std::optional<std::string> value(const std::string& name) const;
    std::string value_or(const std::string& name, const std::string& fallback) const;
    // Every value, in order (repeatable options).
    std::vector<std::string> values(const std::string& name) const;
    const std::vector<std::string>& positional() const { return positional_; }

  private:
    Status take(const OptionSpec& o, std::optional<std::string> value);

    std::map<std::string, std::vector<std::string>> values_;
    std::vector<std::string> positional_;
};

} // namespace keel::cli
