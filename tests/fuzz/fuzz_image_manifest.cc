// Image indexes, manifests and configs. Random bytes would almost never get past the digest
// checks, so the input is a set of JSON documents the harness packs into a valid archive:
//
//   DOC0 \n--\n DOC1 \n--\n DOC2 ...
//
// DOC0 is index.json (or manifest.json, the `docker save` form, when it starts with '['), every
// other document a blob under blobs/sha256/ named by its own digest. In a document, "@N" becomes
// "sha256:<digest of DOC N>" and "#N" the bare hex digest, for N after it (so digests can be
// computed from the last document back), which lets the fuzzer write descriptors that verify.
#include <cstdio>
#include <cstring>
#include <vector>

#include "fuzz_util.h"
#include "image/digest.h"
#include "image/manifest.h"

using namespace keel;

namespace {

std::vector<std::string> split_docs(const std::string& input) {
    std::vector<std::string> docs;
    size_t start = 0;
    for (;;) {
        size_t at = input.find("\n--\n", start);
        docs.push_back(
            input.substr(start, at == std::string::npos ? std::string::npos : at - start));
        if (at == std::string::npos || docs.size() == 10) break;
        start = at + 4;
    }
    return docs;
}

std::string hex_of(const std::string& s) {
    image::Sha256 h;
    h.update(s.data(), s.size());
    return h.hex();
}

// Replaces @N and #N with later documents' digests.
std::string expand(const std::string& doc, size_t self, const std::vector<std::string>& hexes) {
    std::string out;
    for (size_t i = 0; i < doc.size(); i++) {
        char c = doc[i];
        if ((c == '@' || c == '#') && i + 1 < doc.size() && doc[i + 1] >= '0' &&
            doc[i + 1] <= '9') {
            size_t n = static_cast<size_t>(doc[i + 1] - '0');
            if (n > self && n < hexes.size()) {
                out += (c == '@' ? "sha256:" : "") + hexes[n];
                i++;
                continue;
            }
        }
        out += c;
    }
    return out;
}

// A ustar member (names here are under 100 bytes): header, content, padding to 512.
void add_member(std::string& tar, const std::string& name, const std::string& content) {
    char h[512] = {};
    std::snprintf(h, 100, "%s", name.c_str());
    std::snprintf(h + 100, 8, "%07o", 0644);
    std::snprintf(h + 108, 8, "%07o", 0);
    std::snprintf(h + 116, 8, "%07o", 0);
    std::snprintf(h + 124, 12, "%011zo", content.size());
    std::snprintf(h + 136, 12, "%011o", 0);
    h[156] = '0';
    std::memcpy(h + 257,
                "ustar\0"
                "00",
                8);
    std::memset(h + 148, ' ', 8);
    unsigned sum = 0;
    for (unsigned char c : h)
        sum += c;
    std::snprintf(h + 148, 8, "%06o", sum);
    tar.append(h, sizeof h);
    tar += content;
    tar.append((512 - content.size() % 512) % 512, '\0');
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const std::string work = fuzz::scratch_dir("manifest");
    auto docs = split_docs(fuzz::text(data, size));
    std::vector<std::string> hexes(docs.size());
    for (size_t i = docs.size(); i-- > 1;) {
        docs[i] = expand(docs[i], i, hexes);
        hexes[i] = hex_of(docs[i]);
    }
    docs[0] = expand(docs[0], 0, hexes);
    bool docker = !docs[0].empty() && docs[0][0] == '[';

    std::string tar;
    if (!docker) add_member(tar, "oci-layout", "{\"imageLayoutVersion\":\"1.0.0\"}");
    add_member(tar, docker ? "manifest.json" : "index.json", docs[0]);
    for (size_t i = 1; i < docs.size(); i++)
        add_member(tar, "blobs/sha256/" + hexes[i], docs[i]);
    tar.append(1024, '\0');
    Fd in = fuzz::memfd_with(tar);

    {
        auto members = image::ArchiveMembers::unpack("fuzz.tar", work, in.get());
        if (!members)
            fuzz::violated("the harness's own archive did not unpack: " + members.error().str());
        if (auto specs = image::read_image_specs(*members, "fuzz"))
            for (const auto& s : *specs) {
                if (!image::is_sha256_hex(s.id))
                    fuzz::violated("image id is not a digest: " + s.id);
                for (const auto& l : s.layers)
                    if (!image::is_sha256_hex(l.diff_id))
                        fuzz::violated("diff_id is not a digest: " + l.diff_id);
            }
    }
    fuzz::wipe(work);
    return 0;
}
