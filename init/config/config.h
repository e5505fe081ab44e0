// The system configuration: built-in defaults, the overlay on the state partition
// (/var/lib/keel/config.yml, written by `keel config set` and `keel service enable|disable`),
// and `keel.config.KEY=VALUE` on the kernel command line, in that order of precedence.
//
// Every key is declared in one table (keys()), so validation, `keel config get|set` and the
// README's reference cannot disagree. A broken overlay never bricks the box: load() falls back
// to the last copy that validated.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "common/error.h"

namespace keel::config {

enum class Type { string, boolean, id, hostname, cidr, ipv4, ipv4_list, ssh_keys };

struct KeySpec {
    std::string key; // dotted path; "*" matches one name (services.*.enabled)
    Type type;
    std::string default_yaml; // the built-in default, as YAML
    std::string help;         // one line, for `keel config keys` and the README
};
const std::vector<KeySpec>& keys();
const KeySpec* find_key(const std::string& dotted);

YAML::Node defaults();

// Checks a whole document against keys(). Errors name file, line, column and key, with a
// "did you mean" for unknown keys.
Status validate(const YAML::Node& doc, const std::string& file);
// Parses and validates a configuration file's text.
Result<YAML::Node> parse(const std::string& text, const std::string& file);

// The typed value for `keel config set KEY VALUE`: VALUE is YAML ("true", "[a, b]", "10.0.0.5/24").
Result<YAML::Node> value_for(const std::string& key, const std::string& value);
std::optional<YAML::Node> get(const YAML::Node& doc, const std::string& key);
void set(YAML::Node& doc, const std::string& key, const YAML::Node& value);
// `over` onto `base`, maps merged key by key, anything else replaced. Both are cloned.
YAML::Node merged(const YAML::Node& base, const YAML::Node& over);
std::string to_yaml(const YAML::Node& doc);
// A value as text: scalars as they are, lists as "a b c" — or one item per line when an item
// holds a space itself (ssh.authorized_keys), where a space would not say where one ends.
// keeld substitutes this form into services' environment (${ssh.authorized_keys}).
std::string to_text(const YAML::Node& value);

struct Loaded {
    YAML::Node effective; // defaults + overlay (or last good) + command line
    YAML::Node overlay;   // what was used from the state partition (a map; empty if none)
    std::string source;   // "defaults", "overlay", "last good", for the boot message
    std::string error;    // the overlay's error, when it was not used
    std::vector<std::string> warnings; // rejected command-line overrides
};
// Reads the overlay; if it does not parse or validate, the last good copy is used instead and
// the broken file is left alone for the user to fix.
Loaded load(const std::string& overlay_path, const std::string& last_good_path,
            const std::map<std::string, std::string>& cmdline_overrides);

} // namespace keel::config
