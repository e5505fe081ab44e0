// SHA-256 digests as OCI writes them ("sha256:" + 64 lowercase hex digits).
#pragma once

#include <nettle/sha2.h>

#include <cstddef>
#include <string>
#include <string_view>

#include "common/error.h"

namespace keel::image {

class Sha256 {
  public:
    Sha256() { sha256_init(&ctx_); }
    void update(const void* data, size_t n) {
        sha256_update(&ctx_, n, static_cast<const uint8_t*>(data));
    }
    // Lowercase hex; the object is reset afterwards.
    std::string hex();

  private:
    sha256_ctx ctx_;
};

// 64 lowercase hex digits: the only form a digest may take before it becomes part of a path in
// the store (layers/<hex>, images/<hex>.json).
bool is_sha256_hex(std::string_view s);

// "sha256:<hex>" -> "<hex>". Other algorithms are refused by name: a digest we cannot check
// would make the verification a formality.
Result<std::string> parse_digest(std::string_view digest);

} // namespace keel::image
