#include "image/store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "common/fd.h"
#include "common/log.h"
#include "common/strings.h"
#include "image/archive.h"
#include "image/digest.h"
#include "image/fs.h"
#include "image/layer.h"
#include "image/manifest.h"

namespace keel::image {

using json = nlohmann::json;

std::string normalize_name(std::string_view ref) {
    std::string n(ref);
    for (const char* hub :
         {"docker.io/library/", "index.docker.io/library/", "docker.io/", "index.docker.io/"})
        if (starts_with(n, hub)) {
            n.erase(0, std::string_view(hub).size());
            break;
        }
    auto slash = n.rfind('/');
    auto last = slash == std::string::npos ? n : n.substr(slash + 1);
    if (n.find('@') == std::string::npos && last.find(':') == std::string::npos) n += ":latest";
    return n;
}

namespace {

bool exists(const std::string& path) {
    struct stat st;
    return ::lstat(path.c_str(), &st) == 0;
}

// One import or removal at a time, across processes too: a second keeld or a CLI run on the
// same store waits. Released when the descriptor closes.
Result<Fd> lock_store(const std::string& root, bool wait) {
    Fd fd(::open((root + "/lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    if (!fd) return sys_error("open " + root + "/lock");
    int rc;
    do
        rc = ::flock(fd.get(), LOCK_EX | (wait ? 0 : LOCK_NB));
    while (rc < 0 && errno == EINTR);
    if (rc < 0) return sys_error("lock " + root + "/lock");
    return fd;
}

json image_to_json(const Image& img) {
    return json{{"id", img.id},
                {"names", img.names},
                {"layers", img.layers},
                {"config",
                 {{"entrypoint", img.config.entrypoint},
                  {"cmd", img.config.cmd},
                  {"env", img.config.env},
                  {"working_dir", img.config.working_dir},
                  {"user", img.config.user}}},
                {"size_bytes", img.size_bytes},
                {"created_unix", img.created_unix}};
}

Result<Image> image_from_json(const std::string& text, const std::string& file) {
    json j = json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_object()) return plain_error(file + ": not valid JSON");
    try {
        Image img;
        img.id = j.at("id").get<std::string>();
        img.names = j.at("names").get<std::vector<std::string>>();
        img.layers = j.at("layers").get<std::vector<std::string>>();
        const json& c = j.at("config");
        img.config.entrypoint = c.at("entrypoint").get<std::vector<std::string>>();
        img.config.cmd = c.at("cmd").get<std::vector<std::string>>();
        img.config.env = c.at("env").get<std::vector<std::string>>();
        img.config.working_dir = c.at("working_dir").get<std::string>();
        img.config.user = c.at("user").get<std::string>();
        img.size_bytes = j.at("size_bytes").get<int64_t>();
        img.created_unix = j.at("created_unix").get<int64_t>();
        if (!is_sha256_hex(img.id)) return plain_error(file + ": invalid id");
        for (const auto& l : img.layers)
            if (!is_sha256_hex(l)) return plain_error(file + ": invalid layer " + l);
        return img;
    } catch (const json::exception& e) {
        return plain_error(file + ": " + e.what());
    }
}

// Every image file; `complete` is false when one could not be read (then nothing may be
// concluded from a layer appearing unused).
Result<std::vector<Image>> read_images(const std::string& root, bool* complete = nullptr) {
    if (complete) *complete = true;
    std::string dir = root + "/images";
    auto names = list_dir(dir);
    if (!names) return names.error();
    std::vector<Image> out;
    for (const auto& n : *names) {
        if (n.size() != 69 || !n.ends_with(".json") || !is_sha256_hex(n.substr(0, 64))) continue;
        std::string text;
        Result<Image> img = read_file((dir + "/" + n).c_str(), text)
                                ? image_from_json(text, dir + "/" + n)
                                : Result<Image>(sys_error("read " + dir + "/" + n));
        if (!img || img->id != n.substr(0, 64)) {
            log::warn("image store: skipping {}: {}", n,
                      img ? "id does not match the file name" : img.error().str());
            if (complete) *complete = false;
            continue;
        }
        out.push_back(std::move(*img));
    }
    std::sort(out.begin(), out.end(), [](const Image& a, const Image& b) {
        if (a.names.empty() != b.names.empty()) return b.names.empty();
        if (!a.names.empty() && a.names[0] != b.names[0]) return a.names[0] < b.names[0];
        return a.id < b.id;
    });
    return out;
}

Status write_image(const std::string& root, const Image& img) {
    std::string path = root + "/images/" + img.id + ".json";
    if (!write_file_atomic(path, image_to_json(img).dump(2) + "\n", 0600))
        return sys_error("write " + path);
    return {};
}

Status fsync_dir(const std::string& dir) {
    Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!fd || ::fsync(fd.get()) < 0) return sys_error("fsync " + dir);
    return {};
}

// "/x/busybox.tar.gz" -> "busybox": the repository a bare tag in an OCI layout belongs to.
std::string repo_from_archive_name(const std::string& path) {
    std::string base = path.substr(path.rfind('/') + 1);
    for (const char* ext : {".tar.gz", ".tar.zst", ".tgz", ".tar", ".oci"})
        if (base.size() > std::string_view(ext).size() && base.ends_with(ext)) {
            base.resize(base.size() - std::string_view(ext).size());
            break;
        }
    return base;
}

// Steps that are undone, newest first, unless the import gets to the end.
class Rollback {
  public:
    ~Rollback() {
        for (auto it = undo_.rbegin(); it != undo_.rend(); ++it)
            (*it)();
    }
    void add(std::function<void()> f) { undo_.push_back(std::move(f)); }
    void commit() { undo_.clear(); }

  private:
    std::vector<std::function<void()>> undo_;
};

struct TempDir {
    std::string path;
    ~TempDir() {
        if (path.empty()) return;
        if (auto st = remove_tree(path); !st) log::warn("image store: {}", st.error().str());
    }
};

} // namespace

Store::Store(std::string root) : root_(std::move(root)) {
    while (root_.size() > 1 && root_.back() == '/')
        root_.pop_back();
    init_ = [&]() -> Status {
        if (root_.empty() || root_[0] != '/')
            return plain_error("image store: root must be an absolute path: '" + root_ + "'");
        KEEL_TRY(make_dirs(root_, 0700));
        char real[PATH_MAX];
        if (!::realpath(root_.c_str(), real)) return sys_error("image store: realpath " + root_);
        root_ = real;
        for (const char* d : {"/layers", "/images", "/tmp"})
            if (::mkdir((root_ + d).c_str(), 0700) < 0 && errno != EEXIST)
                return sys_error("mkdir " + root_ + d);
        return {};
    }();
    if (!init_) return;

    // Clean up after an import or removal that was interrupted (a crash, a kill): its work in
    // tmp/, a temporary image file, layers that were moved in before their image file was
    // written. Only when no other process is importing right now.
    auto lock = lock_store(root_, false);
    if (!lock) return;
    if (auto names = list_dir(root_ + "/tmp"); names)
        for (const auto& n : *names)
            if (auto st = remove_tree(root_ + "/tmp/" + n); !st)
                log::warn("image store: {}", st.error().str());
    if (auto names = list_dir(root_ + "/images"); names)
        for (const auto& n : *names)
            if (n.find(".json.tmp.") != std::string::npos)
                ::unlink((root_ + "/images/" + n).c_str());
    bool complete = false;
    auto images = read_images(root_, &complete);
    auto layers = list_dir(root_ + "/layers");
    if (!images || !complete || !layers) return;
    std::set<std::string> used;
    for (const auto& img : *images)
        used.insert(img.layers.begin(), img.layers.end());
    for (const auto& l : *layers) {
        if (used.count(l) || !is_sha256_hex(l)) continue;
        log::info("image store: removing layer {}, which no image uses", l);
        if (auto st = remove_tree(root_ + "/layers/" + l); !st)
            log::warn("image store: {}", st.error().str());
    }
}

Result<std::vector<Image>> Store::import(const std::string& archive_path, int fd) {
    KEEL_TRY(init_);
    auto fail = [&](Error e) { return wrap(archive_path, std::move(e)); };
    auto lock = lock_store(root_, true);
    if (!lock) return lock.error();

    TempDir work;
    {
        std::string tmpl = root_ + "/tmp/import-XXXXXX";
        if (!::mkdtemp(tmpl.data())) return sys_error("mkdtemp " + tmpl);
        work.path = tmpl;
    }
    for (const char* d : {"/blobs", "/layers"})
        if (::mkdir((work.path + d).c_str(), 0700) < 0) return sys_error("mkdir " + work.path + d);

    auto members = ArchiveMembers::unpack(archive_path, work.path + "/blobs", fd);
    if (!members) return fail(members.error());
    auto specs = read_image_specs(*members, repo_from_archive_name(archive_path));
    if (!specs) return fail(specs.error());

    // Every layer is unpacked into tmp/ and checked against its diff_id before any of them
    // moves into layers/. One the store already has is only hashed.
    std::map<std::string, int64_t> layer_size;
    std::vector<std::pair<std::string, std::string>> staged; // (dir in tmp/, diff_id)
    for (const auto& spec : *specs) {
        for (const auto& layer : spec.layers) {
            if (layer_size.count(layer.diff_id)) continue;
            const Member* blob = members->find(layer.member);
            if (!blob) return fail(plain_error(layer.label + ": missing from the archive"));
            bool have = exists(root_ + "/layers/" + layer.diff_id);
            std::string dest;
            if (!have) {
                dest = work.path + "/layers/" + std::to_string(staged.size());
                if (::mkdir(dest.c_str(), 0755) < 0) return sys_error("mkdir " + dest);
            }
            auto content = unpack_layer(blob->file, dest);
            if (!content) return fail(wrap(layer.label, content.error()));
            if (content->diff_id != layer.diff_id)
                return fail(plain_error(layer.label +
                                        ": uncompressed content does not match diff_id sha256:" +
                                        layer.diff_id + " (got sha256:" + content->diff_id + ")"));
            for (const auto& note : content->notes)
                log::info("{}: {}: {}", archive_path, layer.label, note);
            layer_size[layer.diff_id] = content->size;
            if (!have) staged.emplace_back(dest, layer.diff_id);
        }
    }

    auto existing = read_images(root_);
    if (!existing) return existing.error();
    std::vector<Image> imported;
    for (const auto& spec : *specs) {
        Image img;
        img.id = spec.id;
        img.layers.reserve(spec.layers.size());
        for (const auto& l : spec.layers) {
            img.layers.push_back(l.diff_id);
            img.size_bytes += layer_size[l.diff_id];
        }
        img.config = spec.config;
        img.created_unix = spec.created_unix;
        for (const auto& have : *existing)
            if (have.id == img.id) img.names = have.names;
        for (const auto& n : spec.names)
            if (std::find(img.names.begin(), img.names.end(), n) == img.names.end())
                img.names.push_back(n);
        imported.push_back(std::move(img));
    }

    // Commit. The layers' files reach the disk before anything names them; each step is undone
    // if a later one fails.
    {
        Fd rootfd(::open(root_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        if (!rootfd || ::syncfs(rootfd.get()) < 0) return sys_error("syncfs " + root_);
    }
    Rollback rollback;
    for (const auto& [dir, diff_id] : staged) {
        std::string target = root_ + "/layers/" + diff_id;
        if (::rename(dir.c_str(), target.c_str()) < 0)
            return sys_error("rename " + dir + " to " + target);
        rollback.add([dir = dir, target] { (void)::rename(target.c_str(), dir.c_str()); });
    }
    KEEL_TRY(fsync_dir(root_ + "/layers"));
    // A name belongs to one image: the new one takes it from whichever had it.
    for (const auto& have : *existing) {
        Image changed = have;
        std::erase_if(changed.names, [&](const std::string& n) {
            for (const auto& img : imported)
                if (img.id != have.id &&
                    std::find(img.names.begin(), img.names.end(), n) != img.names.end())
                    return true;
            return false;
        });
        if (changed.names.size() == have.names.size()) continue;
        KEEL_TRY(write_image(root_, changed));
        rollback.add([this, have] { (void)write_image(root_, have); });
    }
    for (const auto& img : imported) {
        auto before = std::find_if(existing->begin(), existing->end(),
                                   [&](const Image& e) { return e.id == img.id; });
        KEEL_TRY(write_image(root_, img));
        if (before != existing->end())
            rollback.add([this, old = *before] { (void)write_image(root_, old); });
        else
            rollback.add(
                [path = root_ + "/images/" + img.id + ".json"] { (void)::unlink(path.c_str()); });
    }
    rollback.commit();
    for (const auto& img : imported)
        log::info("image {} imported from {} ({} layer{})",
                  img.names.empty() ? img.id.substr(0, 12) : join(img.names, ", "), archive_path,
                  img.layers.size(), img.layers.size() == 1 ? "" : "s");
    return imported;
}

Result<std::vector<Image>> Store::list() const {
    KEEL_TRY(init_);
    return read_images(root_);
}

Result<Image> Store::find(const std::string& name_or_id_prefix) const {
    KEEL_TRY(init_);
    auto images = read_images(root_);
    if (!images) return images.error();
    std::string name = normalize_name(name_or_id_prefix);
    for (const auto& img : *images)
        if (std::find(img.names.begin(), img.names.end(), name) != img.names.end()) return img;
    std::string prefix = name_or_id_prefix;
    if (starts_with(prefix, "sha256:")) prefix.erase(0, 7);
    bool hex = !prefix.empty() && prefix.size() <= 64 &&
               std::all_of(prefix.begin(), prefix.end(),
                           [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
    if (hex) {
        std::vector<const Image*> matches;
        for (const auto& img : *images)
            if (starts_with(img.id, prefix)) matches.push_back(&img);
        if (matches.size() == 1) return *matches[0];
        if (matches.size() > 1)
            return plain_error("image id prefix '" + name_or_id_prefix + "' is ambiguous: " +
                               std::to_string(matches.size()) + " images match");
    }
    return plain_error("no image '" + name_or_id_prefix + "'");
}

Status Store::remove(const std::string& name_or_id) {
    KEEL_TRY(init_);
    auto lock = lock_store(root_, true);
    if (!lock) return lock.error();
    auto img = find(name_or_id);
    if (!img) return img.error();
    std::string file = root_ + "/images/" + img->id + ".json";
    if (::unlink(file.c_str()) < 0) return sys_error("remove " + file);
    KEEL_TRY(fsync_dir(root_ + "/images"));

    // A layer still named by an image file that cannot be read stays: better a leftover layer
    // than a broken image.
    bool complete = false;
    auto rest = read_images(root_, &complete);
    if (!rest || !complete) return {};
    std::set<std::string> used;
    for (const auto& other : *rest)
        used.insert(other.layers.begin(), other.layers.end());
    for (const auto& l : std::set<std::string>(img->layers.begin(), img->layers.end())) {
        if (used.count(l)) continue;
        // Out of layers/ in one step, then deleted at leisure: a crash halfway leaves a partial
        // tree in tmp/ (cleaned at the next start), never a half layer that looks whole.
        std::string from = root_ + "/layers/" + l, to = root_ + "/tmp/remove-" + l;
        if (::rename(from.c_str(), to.c_str()) < 0) {
            if (errno != ENOENT) log::warn("image store: rename {}: {}", from, errno_name(errno));
            continue;
        }
        if (auto st = remove_tree(to); !st) log::warn("image store: {}", st.error().str());
    }
    return {};
}

std::vector<std::string> Store::lower_dirs(const Image& image) const {
    std::vector<std::string> dirs;
    for (auto it = image.layers.rbegin(); it != image.layers.rend(); ++it)
        dirs.push_back(root_ + "/layers/" + *it);
    return dirs;
}

} // namespace keel::image
