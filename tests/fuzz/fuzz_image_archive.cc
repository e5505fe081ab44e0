// An image archive as `keel image import` reads it: any bytes as the tar (plain, gzip or zstd),
// unpacked member by member, then read as an OCI layout or a `docker save` archive.
#include "fuzz_util.h"
#include "image/manifest.h"

using namespace keel;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const std::string work = fuzz::scratch_dir("archive");
    Fd in = fuzz::memfd_with(fuzz::text(data, size));
    {
        auto members = image::ArchiveMembers::unpack("fuzz.tar", work, in.get());
        if (members) (void)image::read_image_specs(*members, "fuzz");
    }
    fuzz::wipe(work);
    return 0;
}
