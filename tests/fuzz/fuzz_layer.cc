// One image layer: any bytes as the blob (plain tar, gzip or zstd), unpacked as the image store
// does, with its path rules (no absolute names, no "..", nothing written through a symlink, hard
// links only inside the layer) and whiteouts (.wh.NAME, .wh..wh..opq).
//
// Run as root, the unpacker keeps ownership and makes device nodes, so the scratch directory is
// a tmpfs mounted nodev,nosuid in a mount namespace of this process's own: what a layer makes
// there can be neither opened as a device nor outlive the run. Two levels above the layer's
// directory are watched: anything appearing there is an escape, reported as a crash.
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include "fuzz_util.h"
#include "image/digest.h"
#include "image/layer.h"

using namespace keel;

namespace {

struct Scratch {
    std::string top;   // scratch/: must hold "outer" only
    std::string outer; // scratch/outer: must hold "layer" only
    std::string layer; // scratch/outer/layer: where the layer is unpacked
};

const Scratch& scratch() {
    static const Scratch s = [] {
        Scratch out;
        out.top = fuzz::scratch_dir("layer");
        if (::geteuid() == 0) {
            if (::unshare(CLONE_NEWNS) < 0 ||
                ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) < 0 ||
                ::mount("tmpfs", out.top.c_str(), "tmpfs", MS_NODEV | MS_NOSUID, "mode=0700") < 0)
                fuzz::violated("private tmpfs for the layer");
        }
        out.outer = out.top + "/outer";
        out.layer = out.outer + "/layer";
        return out;
    }();
    return s;
}

void expect_only(const std::string& dir, const std::string& name) {
    auto names = image::list_dir(dir);
    if (!names) fuzz::violated("list " + dir);
    for (const auto& n : *names)
        if (n != name) fuzz::violated("the layer wrote outside its directory: " + dir + "/" + n);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const Scratch& s = scratch();
    if (::mkdir(s.outer.c_str(), 0700) < 0 || ::mkdir(s.layer.c_str(), 0700) < 0)
        fuzz::violated("mkdir " + s.layer);
    Fd blob = fuzz::memfd_with(fuzz::text(data, size));
    std::string path = "/proc/self/fd/" + std::to_string(blob.get());
    auto content = image::unpack_layer(path, s.layer);
    if (content && !image::is_sha256_hex(content->diff_id))
        fuzz::violated("diff_id is not a digest");
    // Hashing alone (a layer the store already has) must agree with unpacking.
    auto hashed = image::unpack_layer(path, "");
    if (content && hashed && hashed->diff_id != content->diff_id)
        fuzz::violated("hash-only diff_id differs");
    expect_only(s.top, "outer");
    expect_only(s.outer, "layer");
    if (auto st = image::remove_tree(s.outer); !st)
        fuzz::violated("remove " + s.outer + ": " + st.error().str());
    return 0;
}
