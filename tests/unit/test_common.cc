// Pure logic shared by every component: errors, strings, atomic writes, the OCI
// state store.
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include "common/error.h"
#include "common/fd.h"
#include "common/quota.h"
#include "common/strings.h"
#include "runtime/state.h"

using namespace keel;

namespace {
std::string temp_dir() {
    char tmpl[] = "/tmp/keel-unit-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    return tmpl;
}
} // namespace

TEST_CASE("errors carry errno name and context") {
    CHECK(sys_error("pivot_root /x", EINVAL).str() == "pivot_root /x: EINVAL (Invalid argument)");
    CHECK(plain_error("no rootfs").str() == "no rootfs");
    CHECK(wrap("create c1", sys_error("mount /proc", EPERM)).str() ==
          "create c1: mount /proc: EPERM (Operation not permitted)");
    CHECK(errno_name(ENOENT) == "ENOENT");
}

TEST_CASE("strings") {
    CHECK(split("a::b", ':') == std::vector<std::string>{"a", "", "b"});
    CHECK(trim("  x y \n") == "x y");
    CHECK(join({"a", "b", "c"}, ", ") == "a, b, c");
    CHECK(edit_distance("kitten", "sitting") == 3);
    CHECK(closest("stat", {"state", "start", "list"}) == "state");
    CHECK(closest("zzzzzz", {"state", "start"}).empty());
}

TEST_CASE("atomic writes replace the whole file and leave no temporary behind") {
    std::string dir = temp_dir();
    std::string path = dir + "/config.yml";
    REQUIRE(write_file_atomic(path, "first\n"));
    REQUIRE(write_file_atomic(path, "second\n", 0600));
    std::string text;
    REQUIRE(read_file(path.c_str(), text));
    CHECK(text == "second\n");
    struct stat st {};
    REQUIRE(::stat(path.c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0600);
    CHECK(::rmdir(dir.c_str()) == -1); // the file is still there, and nothing else
    ::unlink(path.c_str());
    CHECK(::rmdir(dir.c_str()) == 0);
    CHECK_FALSE(write_file_atomic(dir + "/missing/x", "y"));
}

TEST_CASE("container ids are safe path components") {
    CHECK(runtime::state::check_id("web-1.a_b").ok());
    for (const char* bad : {"", "..", ".hidden", "a/b", "a b", "x;y"}) {
        INFO(bad);
        CHECK_FALSE(runtime::state::check_id(bad).ok());
    }
}

TEST_CASE("state store: save, load, list, remove; liveness checks the start time") {
    std::string dir = temp_dir();
    runtime::state::Store store(dir + "/root");
    REQUIRE(store.create("c1").ok());
    auto again = store.create("c1");
    REQUIRE_FALSE(again.ok());
    CHECK(again.error().str() == "container c1 already exists");

    runtime::state::ContainerState st;
    st.id = "c1";
    st.pid = ::getpid();
    st.starttime = runtime::state::process_starttime(::getpid());
    st.bundle = "/b";
    st.created = runtime::state::now_rfc3339();
    REQUIRE(st.starttime > 0);
    REQUIRE(store.save(st).ok());
    auto loaded = store.load("c1");
    REQUIRE(loaded.ok());
    CHECK(loaded->pid == st.pid);
    CHECK(loaded->bundle == "/b");
    CHECK(store.list() == std::vector<std::string>{"c1"});
    CHECK(runtime::state::phase_of(store, *loaded) == runtime::state::Phase::running);

    loaded->starttime += 1; // the same pid, another process: not the container
    CHECK(runtime::state::phase_of(store, *loaded) == runtime::state::Phase::stopped);
    auto json = runtime::state::to_json(*loaded, runtime::state::Phase::stopped, false);
    CHECK(json.find("\"status\":\"stopped\"") != std::string::npos);
    CHECK(json.find("\"pid\":0") != std::string::npos);

    REQUIRE(store.remove("c1").ok());
    auto gone = store.load("c1");
    REQUIRE_FALSE(gone.ok());
    CHECK(gone.error().str() == "container c1 does not exist");
    ::rmdir((dir + "/root").c_str());
    ::rmdir(dir.c_str());
}

TEST_CASE("quota: the user runtime's share leaves the system a reserve of blocks and inodes",
          "[quota]") {
    // A 64 MiB state disk (the QEMU tests'): 16 MiB and 1,638 inodes stay the system's.
    auto small = quota::user_state_limits(64ull << 20, 16384);
    CHECK(small.bytes == 48ull << 20);
    CHECK(small.inodes == 16384 - 1638);
    // A large one: a tenth of each.
    auto large = quota::user_state_limits(100ull << 30, 6553600);
    CHECK(large.bytes == 90ull << 30);
    CHECK(large.inodes == 6553600 - 655360);
    // A tiny one: the floors would take everything; the reserve is at most half.
    auto tiny = quota::user_state_limits(8ull << 20, 1024);
    CHECK(tiny.bytes == 4ull << 20);
    CHECK(tiny.inodes == 512);
}
