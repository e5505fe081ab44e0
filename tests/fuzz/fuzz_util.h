// Helpers the fuzz targets share: inputs as text or as a file descriptor, and scratch
// directories that are emptied after every input.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "common/fd.h"
#include "image/fs.h"

namespace keel::fuzz {

inline std::string text(const uint8_t* data, size_t size) {
    return std::string(reinterpret_cast<const char*>(data), size);
}

// A finding is a crash: libFuzzer stops, and scripts/fuzz reports the input that caused it.
[[noreturn]] inline void violated(const std::string& what) {
    std::fprintf(stderr, "fuzz invariant violated: %s\n", what.c_str());
    std::abort();
}

// The input as a file (a memfd): the image code reads archives from paths and descriptors.
inline Fd memfd_with(const std::string& bytes) {
    Fd fd(::memfd_create("fuzz-input", MFD_CLOEXEC));
    if (!fd) violated("memfd_create");
    size_t done = 0;
    while (done < bytes.size()) {
        ssize_t n = ::write(fd.get(), bytes.data() + done, bytes.size() - done);
        if (n <= 0) violated("write memfd");
        done += static_cast<size_t>(n);
    }
    return fd;
}

// A directory made once per process, in /dev/shm when it exists (memory is faster than disk
// and leaves nothing behind on a crash that the next boot would not clear).
inline std::string scratch_dir(const char* name) {
    const char* base = std::getenv("KEEL_FUZZ_TMP");
    if (!base) base = ::access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    std::string tmpl = std::string(base) + "/keel-" + name + "-XXXXXX";
    if (!::mkdtemp(tmpl.data())) violated("mkdtemp " + tmpl);
    return tmpl;
}

// Empties `dir` (keeps the directory itself).
inline void wipe(const std::string& dir) {
    auto names = image::list_dir(dir);
    if (!names) violated("list " + dir);
    for (const auto& n : *names)
        if (auto st = image::remove_tree(dir + "/" + n); !st)
            violated("wipe " + dir + "/" + n + ": " + st.error().str());
}

} // namespace keel::fuzz
