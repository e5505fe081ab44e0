// Command-line options for the CLI's subcommands: GNU style (--name=value, --name value, -n
// value, -d), plus the single-dash long form (-bundle) that runc's users and callers pass.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/error.h"

namespace keel::cli {

struct Option {
    std::string name;    // long name without dashes: "bundle"
    char short_name = 0; // 'b', or 0
    bool takes_value = false;
};

class Args {
  public:
    // Parses `argv` against `options`; "--" ends the options. Errors name the option and
    // suggest the closest known one.
    static Result<Args> parse(const std::vector<std::string>& argv, const std::vector<Option>& options);

    bool flag(const std::string& name) const { return values_.count(name) > 0; }
    std::optional<std::string> value(const std::string& name) const;
    std::string value_or(const std::string& name, const std::string& fallback) const;
    const std::vector<std::string>& positional() const { return positional_; }

  private:
    std::map<std::string, std::string> values_;
    std::vector<std::string> positional_;
};

} // namespace keel::cli
