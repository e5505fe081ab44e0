// The OCI image store of the user runtime: images imported from OCI layout or `docker save`
// archives, their layers unpacked once and shared, ready to be stacked by overlayfs.
//
// Layout under the root:
//   layers/<diff_id hex>/   one unpacked layer, shared between images, never changed after import
//   images/<id>.json        one image: names, layers (bottom first), config; written last,
//   atomically tmp/                    work in progress; emptied on failure and whenever a Store is
//   made lock                    flock: one import or removal at a time, also across processes
//
// An import is all or nothing: every blob is checked against its digest and every layer's
// uncompressed content against the config's diff_ids before anything leaves tmp/, and an error
// (a corrupt or truncated archive, a digest mismatch, a full disk halfway) leaves the store as it
// was.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"

namespace keel::image {

// The parts of an image's config that say how to run it.
struct ImageConfig {
    std::vector<std::string> entrypoint, cmd, env;
    std::string working_dir, user;
};

struct Image {
    std::string id;                  // sha256 hex of the config blob
    std::vector<std::string> names;  // "busybox:latest"
    std::vector<std::string> layers; // diff_id hex, bottom first
    ImageConfig config;
    int64_t size_bytes = 0;   // the layers' uncompressed size
    int64_t created_unix = 0; // the config's "created", 0 when it has none
};

// A reference as the store keeps names: the Docker Hub prefix dropped, ":latest" added when
// there is no tag. "busybox" -> "busybox:latest", "docker.io/library/alpine:3.19" ->
// "alpine:3.19", "ghcr.io/x/y" -> "ghcr.io/x/y:latest".
std::string normalize_name(std::string_view ref);

class Store {
  public:
    // Creates the layout under `root` when missing, and cleans up after an interrupted import
    // or removal (tmp/, and layers no image uses). Errors surface from the first call.
    explicit Store(std::string root);

    // Imports every image in the archive (for this machine's platform when the archive holds
    // several). Names an image already in the store had are moved to the new one. Importing
    // an image the store holds adds its names.
    // With `fd` >= 0 the archive is read from it; `archive_path` then only names it.
    Result<std::vector<Image>> import(const std::string& archive_path, int fd = -1);
    // Every image, ordered by name (unnamed ones last, by id).
    Result<std::vector<Image>> list() const;
    // By name ("busybox", "busybox:latest") or by a prefix of the id ("sha256:" optional); an
    // ambiguous prefix is an error.
    Result<Image> find(const std::string& name_or_id_prefix) const;
    // Deletes the image (all its names), then each of its layers no other image uses.
    Status remove(const std::string& name_or_id);
    // The image's layer directories, absolute, top first: the order overlayfs wants in lowerdir.
    std::vector<std::string> lower_dirs(const Image& image) const;

    const std::string& root() const { return root_; }

  private:
    Status init_;
    std::string
        root_; // canonical: libarchive refuses to unpack through a symlink anywhere on the path
};

} // namespace keel::image
