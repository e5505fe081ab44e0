// What an image archive holds: the OCI layout (index.json, nested indexes, manifests,
// configs under blobs/sha256/) or the `docker save` form (manifest.json, <id>.json configs,
// <id>/layer.tar layers), reduced to one description per image, every blob on the way checked
// against its digest.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/error.h"
#include "image/archive.h"
#include "image/store.h"

namespace keel::image {

struct LayerRef {
    std::string member;  // the blob in the archive
    std::string diff_id; // sha256 hex of its uncompressed content, from the config
    std::string label;   // how errors name it: "layer sha256:<hex>", "layer <id>/layer.tar"
};

struct ImageSpec {
    std::string id; // sha256 hex of the config blob
    std::vector<std::string> names;
    std::vector<LayerRef> layers; // bottom first
    ImageConfig config;
    int64_t created_unix = 0;
};

// One spec per image; for OCI indexes only the manifests for linux on this machine's
// architecture. A bare tag in an OCI layout's org.opencontainers.image.ref.name ("latest", as
// skopeo writes it) is named after the archive: `repo_for_tags`:latest.
Result<std::vector<ImageSpec>> read_image_specs(const ArchiveMembers& members,
                                                const std::string& repo_for_tags);

// The GOARCH-style name of the architecture this binary runs on ("amd64", "arm64").
const char* host_architecture();

} // namespace keel::image
