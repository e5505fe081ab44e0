// OCI runtime-spec config.json <-> ContainerSpec. Every field the runtime does not implement
// is an error naming the field, never a silent ignore.
#pragma once

#include <string>

#include "common/error.h"
#include "runtime/spec.h"

namespace keel::runtime::oci {

// Parses config.json text. bundle_dir resolves a relative root.path. Errors name the field,
// as a JSON path: "process.capabilities.bounding[2]: unknown capability CAP_FOO".
Result<ContainerSpec> parse_config(const std::string& json_text, const std::string& bundle_dir);
Result<ContainerSpec> load_bundle(const std::string& bundle_dir); // reads bundle/config.json

// The config.json `keel runtime spec` writes: the same defaults as `runc spec`
// (sh, terminal true, default capabilities, masked and read-only paths, namespaces).
std::string default_config_json(bool rootless = false);

// Capability names <-> numbers ("CAP_NET_ADMIN" <-> 12). -1 when unknown.
int capability_from_name(const std::string& name);
std::string capability_name(int cap);

} // namespace keel::runtime::oci
