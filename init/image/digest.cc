#include "image/digest.h"

namespace keel::image {

std::string Sha256::hex() {
    uint8_t d[SHA256_DIGEST_SIZE];
    sha256_digest(&ctx_, sizeof d, d);
    static const char digits[] = "0123456789abcdef";
    std::string out;
    out.reserve(2 * sizeof d);
    for (uint8_t b : d) {
        out += digits[b >> 4];
        out += digits[b & 15];
    }
    return out;
}

bool is_sha256_hex(std::string_view s) {
    if (s.size() != 64) return false;
    for (char c : s)
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    return true;
}

Result<std::string> parse_digest(std::string_view digest) {
    auto colon = digest.find(':');
    if (colon == std::string_view::npos)
        return plain_error("invalid digest '" + std::string(digest) + "'");
    std::string_view alg = digest.substr(0, colon), hex = digest.substr(colon + 1);
    if (alg != "sha256")
        return plain_error("unsupported digest algorithm '" + std::string(alg) + "'");
    if (!is_sha256_hex(hex)) return plain_error("invalid digest '" + std::string(digest) + "'");
    return std::string(hex);
}

} // namespace keel::image
