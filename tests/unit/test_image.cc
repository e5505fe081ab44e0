// The OCI image store: real archives (written by make_oci.py at test time), imported into a
// store under /tmp, checked on disk. Run as root: ownership is kept, overlayfs is mounted.
#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <dirent.h>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/fd.h"
#include "image/store.h"

using namespace keel;
using namespace keel::image;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

struct TempDir {
    std::string path;
    TempDir() {
        char tmpl[] = "/tmp/keel-image-XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        path = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
};

json file_entry(const std::string& path, const std::string& data, int mode = 0644) {
    return {{"path", path}, {"type", "file"}, {"data", data}, {"mode", mode}};
}
json dir_entry(const std::string& path, int mode = 0755) {
    return {{"path", path}, {"type", "dir"}, {"mode", mode}};
}
json layer(const std::string& compression, json entries) {
    return {{"compression", compression}, {"entries", std::move(entries)}};
}

// Writes the archive `spec` describes (see make_oci.py) and returns its path.
std::string make_archive(const std::string& dir, const std::string& name, const json& spec) {
    std::string spec_path = dir + "/" + name + ".spec.json";
    std::string out = dir + "/" + name;
    std::ofstream(spec_path) << spec.dump();
    std::string cmd = "/usr/bin/python3 " KEEL_SOURCE_DIR "/tests/unit/make_oci.py '" + spec_path +
                      "' '" + out + "'";
    REQUIRE(std::system(cmd.c_str()) == 0);
    return out;
}

// The base of most test images: a few directories and files.
json base_layer(const std::string& compression = "gzip") {
    return layer(compression,
                 json::array({dir_entry("bin"), file_entry("bin/tool", "#!/bin/sh\n", 0755),
                              dir_entry("etc"), file_entry("etc/hostname", "keel\n"),
                              file_entry("etc/passwd", "root:x:0:0::/root:/bin/sh\n"),
                              dir_entry("opt"), dir_entry("opt/old"), file_entry("opt/old/a", "a"),
                              file_entry("opt/old/b", "b")}));
}

json simple_image(const std::string& name, json layers) {
    return {{"names", json::array({name})},
            {"cmd", json::array({"sh"})},
            {"layers", std::move(layers)}};
}

// Every path under the store with its type, mode, size and (files) content: what "unchanged"
// means.
std::string snapshot(const std::string& root) {
    std::string out;
    for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator();
         ++it) {
        struct stat st;
        REQUIRE(::lstat(it->path().c_str(), &st) == 0);
        out += it->path().string() + " " + std::to_string(st.st_mode) + " " +
               std::to_string(st.st_size);
        if (S_ISREG(st.st_mode)) {
            std::string data;
            REQUIRE(read_file(it->path().c_str(), data));
            out += " " + std::to_string(std::hash<std::string>()(data));
        }
        out += "\n";
    }
    return out;
}

std::string xattr(const std::string& path, const char* name) {
    char buf[64];
    ssize_t n = ::lgetxattr(path.c_str(), name, buf, sizeof buf);
    return n < 0 ? std::string() : std::string(buf, static_cast<size_t>(n));
}

bool is_whiteout(const std::string& path) {
    struct stat st;
    return ::lstat(path.c_str(), &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0);
}

std::string read(const std::string& path) {
    std::string s;
    return read_file(path.c_str(), s) ? s : "<missing>";
}

// What a container would see: the layers mounted as a read-only overlay, listing `dirs`. With
// `user_namespace` the mount is made the way the user runtime makes it, inside a new user
// namespace with `userxattr`, where only the user.overlay.* marks count.
std::string merged_view(const std::vector<std::string>& lower, const std::vector<std::string>& dirs,
                        bool user_namespace) {
    TempDir mnt;
    int p[2];
    REQUIRE(::pipe(p) == 0);
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        ::close(p[0]);
        auto fail = [&](const char* what) {
            std::string m = std::string("ERROR ") + what + ": " + std::strerror(errno);
            (void)!::write(p[1], m.data(), m.size());
            ::_exit(1);
        };
        if (user_namespace) {
            if (::unshare(CLONE_NEWUSER | CLONE_NEWNS) < 0) fail("unshare");
            if (!write_file("/proc/self/setgroups", "deny") ||
                !write_file("/proc/self/uid_map", "0 0 1") ||
                !write_file("/proc/self/gid_map", "0 0 1"))
                fail("id maps");
        } else if (::unshare(CLONE_NEWNS) < 0) {
            fail("unshare");
        }
        if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) < 0)
            fail("make / private");
        std::string opts = "lowerdir=";
        for (size_t i = 0; i < lower.size(); i++)
            opts += (i ? ":" : "") + lower[i];
        if (user_namespace) opts += ",userxattr";
        if (::mount("overlay", mnt.path.c_str(), "overlay", MS_RDONLY, opts.c_str()) < 0)
            fail("mount overlay");
        std::string out;
        for (const auto& d : dirs) {
            std::vector<std::string> names;
            for (const auto& e : fs::directory_iterator(mnt.path + "/" + d))
                names.push_back(e.path().filename());
            std::sort(names.begin(), names.end());
            out += d + ":";
            for (const auto& n : names)
                out += " " + n;
            out += "\n";
        }
        (void)!::write(p[1], out.data(), out.size());
        ::_exit(0);
    }
    ::close(p[1]);
    std::string out;
    char buf[4096];
    ssize_t n;
    while ((n = ::read(p[0], buf, sizeof buf)) > 0)
        out.append(buf, static_cast<size_t>(n));
    ::close(p[0]);
    int status;
    ::waitpid(pid, &status, 0);
    return out;
}

} // namespace

TEST_CASE("image names are normalized as Docker shows them") {
    CHECK(normalize_name("busybox") == "busybox:latest");
    CHECK(normalize_name("busybox:1.36") == "busybox:1.36");
    CHECK(normalize_name("docker.io/library/alpine:3.19") == "alpine:3.19");
    CHECK(normalize_name("docker.io/me/app") == "me/app:latest");
    CHECK(normalize_name("localhost:5000/app") == "localhost:5000/app:latest");
    CHECK(normalize_name("ghcr.io/x/y@sha256:abc") == "ghcr.io/x/y@sha256:abc");
}

TEST_CASE("image store: OCI layout with gzip and zstd layers, whiteouts and an opaque directory") {
    TempDir t;
    json upper = layer(
        "zstd", json::array({file_entry("etc/.wh.hostname", ""),
                             file_entry("opt/old/.wh..wh..opq", ""), file_entry("opt/old/c", "c"),
                             file_entry("new", "new\n"), file_entry("gone/.wh.never-there", "")}));
    json img = simple_image("busybox:latest", json::array({base_layer("gzip"), upper}));
    img["entrypoint"] = {"/bin/tool"};
    img["env"] = {"PATH=/bin", "A=b"};
    img["working_dir"] = "/opt";
    img["user"] = "1000:1000";
    img["created"] = "2024-01-02T03:04:05.123456789Z";
    std::string archive =
        make_archive(t.path, "busybox.tar", {{"format", "oci"}, {"images", {img}}});

    Store store(t.path + "/store");
    auto imported = store.import(archive);
    INFO((imported ? "" : imported.error().str()));
    REQUIRE(imported);
    REQUIRE(imported->size() == 1);
    const Image& image = (*imported)[0];
    CHECK(image.names == std::vector<std::string>{"busybox:latest"});
    CHECK(image.layers.size() == 2);
    CHECK(image.id.size() == 64);
    CHECK(image.config.entrypoint == std::vector<std::string>{"/bin/tool"});
    CHECK(image.config.cmd == std::vector<std::string>{"sh"});
    CHECK(image.config.env == std::vector<std::string>{"PATH=/bin", "A=b"});
    CHECK(image.config.working_dir == "/opt");
    CHECK(image.config.user == "1000:1000");
    CHECK(image.created_unix == 1704164645);
    CHECK(image.size_bytes > 0);

    auto dirs = store.lower_dirs(image);
    REQUIRE(dirs.size() == 2);
    std::string top = dirs[0], bottom = dirs[1];
    CHECK(top == store.root() + "/layers/" + image.layers[1]);
    CHECK(bottom == store.root() + "/layers/" + image.layers[0]);

    // The bottom layer as it was written.
    CHECK(read(bottom + "/etc/hostname") == "keel\n");
    struct stat st;
    REQUIRE(::stat((bottom + "/bin/tool").c_str(), &st) == 0);
    CHECK((st.st_mode & 07777) == 0755);
    // The upper layer: whiteouts as 0:0 character devices, the opaque mark as an xattr, no
    // .wh. files left.
    CHECK(is_whiteout(top + "/etc/hostname"));
    CHECK(is_whiteout(top + "/gone/never-there"));
    CHECK(xattr(top + "/opt/old", "user.overlay.opaque") == "y");
    CHECK(xattr(top + "/opt", "user.overlay.opaque").empty());
    CHECK(read(top + "/opt/old/c") == "c");
    CHECK(::access((top + "/etc/.wh.hostname").c_str(), F_OK) != 0);
    CHECK(::access((top + "/opt/old/.wh..wh..opq").c_str(), F_OK) != 0);

    // What a container sees, mounted as the user runtime mounts it and as root does.
    std::string want = "etc: passwd\nopt/old: c\n.: bin etc gone new opt\n";
    CHECK(merged_view(dirs, {"etc", "opt/old", "."}, true) == want);
    CHECK(merged_view(dirs, {"etc", "opt/old", "."}, false) == want);

    // The metadata survives a new Store on the same root.
    Store again(t.path + "/store");
    auto listed = again.list();
    REQUIRE(listed);
    REQUIRE(listed->size() == 1);
    CHECK((*listed)[0].id == image.id);
    CHECK((*listed)[0].layers == image.layers);
    CHECK((*listed)[0].config.env == image.config.env);
    CHECK((*listed)[0].size_bytes == image.size_bytes);
}

TEST_CASE("image store: docker save archive, plain tar layers, a repeated layer as a symlink") {
    TempDir t;
    json a = simple_image(
        "app:1",
        json::array({base_layer("none"), layer("none", json::array({file_entry("app", "1")}))}));
    json b = simple_image("docker.io/library/tool:2", json::array({base_layer("none")}));
    std::string archive =
        make_archive(t.path, "saved.tar", {{"format", "docker"}, {"images", {a, b}}});

    Store store(t.path + "/store");
    auto imported = store.import(archive);
    INFO((imported ? "" : imported.error().str()));
    REQUIRE(imported);
    REQUIRE(imported->size() == 2);
    auto app = store.find("app:1");
    auto tool = store.find("tool:2");
    REQUIRE(app);
    REQUIRE(tool);
    CHECK(app->layers.size() == 2);
    CHECK(tool->layers == std::vector<std::string>{app->layers[0]});
    CHECK(tool->names == std::vector<std::string>{"tool:2"});
    CHECK(read(store.lower_dirs(*app)[0] + "/app") == "1");
    CHECK(read(store.lower_dirs(*tool)[0] + "/etc/hostname") == "keel\n");
}

TEST_CASE("image store: nested index, only this machine's platform; a bare tag takes the archive's "
          "name") {
    TempDir t;
    json img = simple_image("ignored:v2", json::array({base_layer("gzip")}));
    std::string archive = make_archive(t.path, "myapp.tar",
                                       {{"format", "oci"},
                                        {"nested_index", true},
                                        {"other_platform", true},
                                        {"ref_style", "tag"},
                                        {"images", {img}}});
    Store store(t.path + "/store");
    auto imported = store.import(archive);
    INFO((imported ? "" : imported.error().str()));
    REQUIRE(imported);
    REQUIRE(imported->size() == 1);
    CHECK((*imported)[0].names == std::vector<std::string>{"myapp:v2"});
}

TEST_CASE("image store: names, find by name and id prefix, a tag moves to the newer image") {
    TempDir t;
    json a = simple_image("app:1", json::array({base_layer()}));
    a["names"] = {"app:1", "app:latest"};
    json b = simple_image(
        "app:latest",
        json::array({base_layer(), layer("gzip", json::array({file_entry("v", "2")}))}));
    Store store(t.path + "/store");
    auto ia = store.import(make_archive(t.path, "a.tar", {{"images", {a}}}));
    REQUIRE(ia);
    auto ib = store.import(make_archive(t.path, "b.tar", {{"images", {b}}}));
    REQUIRE(ib);
    std::string ida = (*ia)[0].id, idb = (*ib)[0].id;

    auto list = store.list();
    REQUIRE(list);
    REQUIRE(list->size() == 2);
    CHECK((*list)[0].names == std::vector<std::string>{"app:1"});
    CHECK((*list)[1].names == std::vector<std::string>{"app:latest"});

    CHECK(store.find("app")->id == idb);
    CHECK(store.find("app:latest")->id == idb);
    CHECK(store.find("docker.io/library/app:1")->id == ida);
    CHECK(store.find(ida.substr(0, 12))->id == ida);
    CHECK(store.find("sha256:" + idb.substr(0, 8))->id == idb);
    CHECK(store.find(ida)->id == ida);
    auto missing = store.find("nope");
    REQUIRE_FALSE(missing);
    CHECK(missing.error().str() == "no image 'nope'");
    if (ida[0] == idb[0]) {
        auto ambiguous = store.find(ida.substr(0, 1));
        REQUIRE_FALSE(ambiguous);
        CHECK(ambiguous.error().str().find("ambiguous") != std::string::npos);
    }

    // Importing an image the store holds adds its names and writes no new layer.
    json again = simple_image("app:again", json::array({base_layer()}));
    auto ic = store.import(make_archive(t.path, "c.tar", {{"images", {again}}}));
    REQUIRE(ic);
    CHECK((*ic)[0].id == ida);
    CHECK(store.find("app:again")->names == std::vector<std::string>{"app:1", "app:again"});
}

TEST_CASE("image store: remove keeps layers other images use") {
    TempDir t;
    json a = simple_image(
        "a:1",
        json::array({base_layer(), layer("gzip", json::array({file_entry("only-a", "a")}))}));
    json b = simple_image(
        "b:1",
        json::array({base_layer(), layer("zstd", json::array({file_entry("only-b", "b")}))}));
    Store store(t.path + "/store");
    REQUIRE(store.import(make_archive(t.path, "ab.tar", {{"images", {a, b}}})));
    auto ia = store.find("a:1");
    auto ib = store.find("b:1");
    REQUIRE(ia);
    REQUIRE(ib);
    REQUIRE(ia->layers[0] == ib->layers[0]);
    std::string shared = store.root() + "/layers/" + ia->layers[0];
    std::string only_a = store.root() + "/layers/" + ia->layers[1];

    REQUIRE(store.remove("a:1"));
    CHECK_FALSE(store.find("a:1"));
    CHECK(::access(only_a.c_str(), F_OK) != 0);
    CHECK(read(shared + "/etc/hostname") == "keel\n");
    CHECK(store.list()->size() == 1);

    auto gone = store.remove("a:1");
    REQUIRE_FALSE(gone);
    CHECK(gone.error().str() == "no image 'a:1'");

    REQUIRE(store.remove(ib->id.substr(0, 10)));
    CHECK(store.list()->empty());
    CHECK(fs::is_empty(store.root() + "/layers"));
    CHECK(fs::is_empty(store.root() + "/tmp"));
}

TEST_CASE("image store: a corrupt blob is refused by digest and the store is unchanged") {
    TempDir t;
    Store store(t.path + "/store");
    REQUIRE(store.import(make_archive(
        t.path, "good.tar", {{"images", {simple_image("good:1", json::array({base_layer()}))}}})));
    std::string before = snapshot(store.root());

    json img = simple_image(
        "bad:1",
        json::array({base_layer("zstd"),
                     layer("gzip", json::array({file_entry("x", std::string(5000, 'x'))}))}));
    std::string archive =
        make_archive(t.path, "busybox.tar", {{"images", {img}}, {"corrupt_layer", {0, 1}}});
    auto r = store.import(archive);
    REQUIRE_FALSE(r);
    std::string msg = r.error().str();
    INFO(msg);
    CHECK(msg.rfind(archive + ": layer sha256:", 0) == 0);
    CHECK(msg.find(": digest mismatch (got sha256:") != std::string::npos);
    CHECK(snapshot(store.root()) == before);

    // docker save names layers by id, not digest: a damaged layer.tar fails its diff_id.
    std::string saved = make_archive(
        t.path, "saved.tar", {{"format", "docker"}, {"images", {img}}, {"corrupt_layer", {0, 1}}});
    auto d = store.import(saved);
    REQUIRE_FALSE(d);
    INFO(d.error().str());
    CHECK(d.error().str().find("/layer.tar: ") != std::string::npos);
    CHECK(snapshot(store.root()) == before);

    // A config that lists the wrong diff_id: the layer is unpacked into tmp/ and thrown away.
    auto w = store.import(
        make_archive(t.path, "wrong.tar", {{"images", {img}}, {"wrong_diff_id", {0, 0}}}));
    REQUIRE_FALSE(w);
    INFO(w.error().str());
    CHECK(w.error().str().find("uncompressed content does not match diff_id sha256:") !=
          std::string::npos);
    CHECK(snapshot(store.root()) == before);
}

TEST_CASE("image store: a truncated archive is refused and the store is unchanged") {
    TempDir t;
    Store store(t.path + "/store");
    REQUIRE(store.import(make_archive(
        t.path, "good.tar", {{"images", {simple_image("good:1", json::array({base_layer()}))}}})));
    std::string before = snapshot(store.root());

    json img = simple_image(
        "big:1",
        json::array({layer("none", json::array({file_entry("data", std::string(200000, 'd'))}))}));
    std::string archive = make_archive(t.path, "x.tar", {{"images", {img}}});
    auto size = fs::file_size(archive);
    fs::resize_file(archive, size / 2);
    auto r = store.import(archive);
    REQUIRE_FALSE(r);
    CHECK(r.error().str() == archive + ": truncated archive");
    CHECK(snapshot(store.root()) == before);

    std::ofstream(t.path + "/empty.tar").close();
    auto e = store.import(t.path + "/empty.tar");
    REQUIRE_FALSE(e);
    CHECK(e.error().str() == t.path + "/empty.tar: not a tar archive");
    auto missing = store.import(t.path + "/missing.tar");
    REQUIRE_FALSE(missing);
    CHECK(missing.error().str() ==
          t.path + "/missing.tar: open: ENOENT (No such file or directory)");
    CHECK(snapshot(store.root()) == before);
}

TEST_CASE("image store: an archive that is neither form is named as such") {
    TempDir t;
    std::ofstream(t.path + "/readme").close();
    std::string archive = t.path + "/x.tar";
    REQUIRE(std::system(("tar -C " + t.path + " -cf " + archive + " readme").c_str()) == 0);
    Store store(t.path + "/store");
    auto r = store.import(archive);
    REQUIRE_FALSE(r);
    CHECK(r.error().str() ==
          archive + ": not an OCI layout or docker save archive (no index.json or manifest.json)");
}

TEST_CASE("image store: entries that leave the layer are refused") {
    TempDir t;
    std::string outside = t.path + "/outside";
    REQUIRE(::mkdir(outside.c_str(), 0755) == 0);
    struct Case {
        const char* what;
        json entries;
        const char* message;
    };
    std::vector<Case> cases = {
        {"dot-dot", json::array({file_entry("etc/../../evil", "x")}),
         "entry 'etc/../../evil': path leaves the image (..)"},
        {"absolute", json::array({file_entry(outside + "/evil", "x")}), "absolute path"},
        {"through a symlink",
         json::array({json{{"path", "link"}, {"type", "symlink"}, {"target", outside}},
                      file_entry("link/evil", "x")}),
         "entry 'link/evil': "},
        {"hard link out",
         json::array(
             {json{{"path", "h"}, {"type", "hardlink"}, {"target", "../../../etc/passwd"}}}),
         "entry 'h': hard link to '../../../etc/passwd': path leaves the image (..)"},
        {"hard link through a symlink",
         json::array({json{{"path", "l"}, {"type", "symlink"}, {"target", "/etc"}},
                      json{{"path", "h"}, {"type", "hardlink"}, {"target", "l/passwd"}}}),
         "entry 'h': hard link to 'l/passwd'"},
        {"whiteout through a symlink",
         json::array({json{{"path", "l"}, {"type", "symlink"}, {"target", outside}},
                      file_entry("l/.wh.x", "")}),
         "entry 'l/.wh.x': "},
    };
    Store store(t.path + "/store");
    std::string before = snapshot(store.root());
    for (const auto& c : cases) {
        INFO(c.what);
        json img = simple_image("evil:1", json::array({layer("gzip", c.entries)}));
        auto r = store.import(make_archive(t.path, "evil.tar", {{"images", {img}}}));
        REQUIRE_FALSE(r);
        INFO(r.error().str());
        CHECK(r.error().str().find(c.message) != std::string::npos);
        CHECK(r.error().str().find(": layer sha256:") != std::string::npos);
        CHECK(fs::is_empty(outside));
        CHECK(snapshot(store.root()) == before);
    }
}

TEST_CASE("image store: overlay xattrs in an image are dropped, others kept; devices as root") {
    TempDir t;
    json entries = json::array(
        {json{{"path", "f"},
              {"type", "file"},
              {"data", "x"},
              {"xattrs", {{"user.keep", "1"}, {"user.overlay.redirect", "/x"}}}},
         json{{"path", "d"},
              {"type", "dir"},
              {"xattrs", {{"trusted.overlay.opaque", "y"}, {"user.overlay.opaque", "y"}}}},
         json{{"path", "null"}, {"type", "char"}, {"major", 1}, {"minor", 3}, {"mode", 0666}},
         json{{"path", "owned"}, {"type", "file"}, {"data", "o"}, {"uid", 1234}, {"gid", 5678}}});
    Store store(t.path + "/store");
    auto r = store.import(
        make_archive(t.path, "x.tar",
                     {{"images", {simple_image("x:1", json::array({layer("gzip", entries)}))}}}));
    INFO((r ? "" : r.error().str()));
    REQUIRE(r);
    std::string l = store.lower_dirs((*r)[0])[0];
    CHECK(xattr(l + "/f", "user.keep") == "1");
    CHECK(xattr(l + "/f", "user.overlay.redirect").empty());
    CHECK(xattr(l + "/d", "user.overlay.opaque").empty());
    CHECK(xattr(l + "/d", "trusted.overlay.opaque").empty());
    struct stat st;
    REQUIRE(::lstat((l + "/owned").c_str(), &st) == 0);
    if (::geteuid() == 0) {
        CHECK(st.st_uid == 1234);
        CHECK(st.st_gid == 5678);
        REQUIRE(::lstat((l + "/null").c_str(), &st) == 0);
        CHECK(S_ISCHR(st.st_mode));
        CHECK(st.st_rdev == makedev(1, 3));
    }
}

TEST_CASE(
    "image store: without privileges, device nodes are skipped and files belong to the caller") {
    if (::geteuid() != 0) {
        WARN("skipped: needs root to switch to an unprivileged uid");
        return;
    }
    TempDir t;
    REQUIRE(::chmod(t.path.c_str(), 0777) == 0);
    json entries =
        json::array({json{{"path", "dev"}, {"type", "dir"}, {"mode", 0555}},
                     json{{"path", "dev/null"}, {"type", "char"}, {"major", 1}, {"minor", 3}},
                     file_entry("etc/.wh.gone", ""), file_entry("etc/x", "x"),
                     json{{"path", "ro"}, {"type", "dir"}, {"mode", 0555}},
                     file_entry("ro/.wh..wh..opq", ""), file_entry("ro/f", "f", 0444)});
    std::string archive =
        make_archive(t.path, "x.tar",
                     {{"images", {simple_image("x:1", json::array({layer("gzip", entries)}))}}});
    REQUIRE(::chmod(archive.c_str(), 0644) == 0);
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        if (::setgid(65534) < 0 || ::setuid(65534) < 0) ::_exit(2);
        Store store(t.path + "/store");
        auto r = store.import(archive);
        if (!r) {
            std::fprintf(stderr, "%s\n", r.error().str().c_str());
            ::_exit(3);
        }
        std::string l = store.lower_dirs((*r)[0])[0];
        struct stat st;
        bool ok = ::lstat((l + "/dev/null").c_str(), &st) < 0 && is_whiteout(l + "/etc/gone") &&
                  xattr(l + "/ro", "user.overlay.opaque") == "y" &&
                  ::lstat((l + "/ro").c_str(), &st) == 0 && (st.st_mode & 0777) == 0555 &&
                  st.st_uid == 65534;
        if (!ok) ::_exit(4);
        // Its own layers, 0555 directories included, can be removed by the same user.
        if (auto removed = store.remove("x:1"); !removed) {
            std::fprintf(stderr, "%s\n", removed.error().str().c_str());
            ::_exit(5);
        }
        ::_exit(fs::is_empty(t.path + "/store/layers") ? 0 : 6);
    }
    int status;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("image store: a new Store cleans tmp/ and layers no image names") {
    TempDir t;
    std::string root = t.path + "/store";
    {
        Store store(root);
        REQUIRE(store.import(make_archive(
            t.path, "a.tar", {{"images", {simple_image("a:1", json::array({base_layer()}))}}})));
    }
    // What an import killed halfway leaves.
    REQUIRE(::mkdir((root + "/tmp/import-abc").c_str(), 0700) == 0);
    std::ofstream(root + "/tmp/import-abc/m0") << "x";
    std::string orphan = root + "/layers/" + std::string(64, 'a');
    REQUIRE(::mkdir(orphan.c_str(), 0755) == 0);
    std::ofstream(root + "/images/" + std::string(64, 'b') + ".json.tmp.123") << "{";
    Store store(root);
    CHECK(fs::is_empty(root + "/tmp"));
    CHECK(::access(orphan.c_str(), F_OK) != 0);
    CHECK(::access((root + "/images/" + std::string(64, 'b') + ".json.tmp.123").c_str(), F_OK) !=
          0);
    auto a = store.find("a:1");
    REQUIRE(a);
    CHECK(read(store.lower_dirs(*a)[0] + "/etc/passwd") == "root:x:0:0::/root:/bin/sh\n");
}

TEST_CASE("image store: imports scripts/make-busybox-oci's image") {
    if (::access("/bin/busybox", X_OK) != 0) {
        WARN("skipped: no /bin/busybox (busybox-static)");
        return;
    }
    TempDir t;
    std::string archive = t.path + "/busybox.tar";
    REQUIRE(std::system(("/usr/bin/python3 " KEEL_SOURCE_DIR "/scripts/make-busybox-oci " + archive)
                            .c_str()) == 0);
    Store store(t.path + "/store");
    auto r = store.import(archive);
    INFO((r ? "" : r.error().str()));
    REQUIRE(r);
    auto img = store.find("busybox");
    REQUIRE(img);
    CHECK(img->names == std::vector<std::string>{"busybox:latest"});
    CHECK(img->config.cmd == std::vector<std::string>{"sh"});
    REQUIRE(img->layers.size() == 1);
    std::string l = store.lower_dirs(*img)[0];
    struct stat st;
    REQUIRE(::stat((l + "/bin/busybox").c_str(), &st) == 0);
    CHECK((st.st_mode & 0111) != 0);
    char target[64] = {};
    REQUIRE(::readlink((l + "/bin/sh").c_str(), target, sizeof target - 1) > 0);
    CHECK(std::string(target) == "busybox");
    CHECK(read(l + "/etc/passwd").find("nobody:x:65534:65534:") != std::string::npos);
    CHECK(read(l + "/etc/group").find("root:x:0:") != std::string::npos);
}
