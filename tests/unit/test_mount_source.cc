// A bind source where containers write is opened by the runtime itself, beneath its
// directory and with no symbolic link followed: a link planted after keeld checked the path
// (a workload racing the next one's start through a shared volume) is refused, not followed.
// Real containers: root only.
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <catch2/catch.hpp>

#include "runtime/container.h"

namespace fs = std::filesystem;
using keel::runtime::Container;
using keel::runtime::ContainerSpec;
using keel::runtime::Mount;
using keel::runtime::NsType;
using keel::runtime::StartError;

namespace {

struct Scratch {
    std::string path;
    Scratch() {
        char t[] = "/tmp/keel-mntsrc-XXXXXX";
        path = ::mkdtemp(t);
    }
    ~Scratch() { fs::remove_all(path); }
};

ContainerSpec spec_with_volume(const std::string& root, const std::string& source,
                               const std::string& beneath) {
    ContainerSpec c;
    c.id = "mntsrc-" + std::to_string(::getpid());
    c.rootfs = root;
    c.args = {"/bin/busybox", "true"};
    c.namespaces = {{NsType::mount, ""}};
    Mount m;
    m.destination = "/data";
    m.type = "bind";
    m.source = source;
    m.flags = MS_BIND | MS_REC;
    m.source_beneath = beneath;
    c.mounts.push_back(m);
    return c;
}

} // namespace

TEST_CASE("runtime: a bind source beneath a writable directory follows no link",
          "[runtime][root]") {
    if (::geteuid() != 0 || !fs::exists("/bin/busybox")) {
        WARN("needs root and busybox-static");
        return;
    }
    Scratch t;
    std::string root = t.path + "/rootfs", volumes = t.path + "/volumes",
                secret = t.path + "/secret";
    fs::create_directories(root + "/bin");
    fs::create_directories(root + "/data");
    fs::copy_file("/bin/busybox", root + "/bin/busybox");
    fs::create_directories(volumes + "/shared");
    fs::create_directories(secret);
    // What a workload left in a shared volume: a link to a directory it must not reach.
    fs::create_directory_symlink(secret, volumes + "/shared/planted");

    StartError why;
    auto c =
        Container::start(spec_with_volume(root, volumes + "/shared/planted", volumes), {}, &why);
    REQUIRE_FALSE(c.ok());
    CHECK(why.str().find("goes through a symbolic link") != std::string::npos);

    // The same volume without the link mounts, and so does the link where links are allowed
    // (a service's own path): the refusal is the link's, not the mount's.
    auto ok = Container::start(spec_with_volume(root, volumes + "/shared", volumes), {}, &why);
    REQUIRE(ok.ok());
    CHECK(ok->wait()->code == 0);
    (void)ok->cleanup();
    auto followed =
        Container::start(spec_with_volume(root, volumes + "/shared/planted", ""), {}, &why);
    REQUIRE(followed.ok());
    CHECK(followed->wait()->code == 0);
    (void)followed->cleanup();
}
