// One layer: a tar stream (plain, gzip or zstd, told apart by its first bytes) unpacked into a
// directory in the form overlayfs reads as a lower layer.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/error.h"

namespace keel::image {

struct LayerContent {
    std::string diff_id; // sha256 hex of the uncompressed tar stream
    int64_t size = 0;    // bytes of the uncompressed tar stream
    // What could not be kept with the caller's privileges (device nodes, ownership), one line
    // each, for the log: not failures.
    std::vector<std::string> notes;
};

// Reads the layer blob at `blob_path`, unpacks it into the directory `dest` (which must exist
// and be empty), and returns the digest of its uncompressed stream, which the caller compares
// with the image's diff_id. With an empty `dest` the stream is only hashed: a layer the store
// already holds is verified, not unpacked again.
//
// Refused, with the entry named: absolute paths, "..", anything written through a symlink, hard
// links whose target is not inside the layer. Whiteouts become what overlayfs reads: `.wh.NAME`
// a character device 0:0 called NAME, `.wh..wh..opq` the opaque mark on its directory.
Result<LayerContent> unpack_layer(const std::string& blob_path, const std::string& dest);

} // namespace keel::image
