#include "image/manifest.h"

#include <cstdio>
#include <ctime>
#include <map>
#include <nlohmann/json.hpp>

#include "common/fd.h"
#include "common/strings.h"
#include "image/digest.h"

namespace keel::image {

using json = nlohmann::json;

const char* host_architecture() {
#if defined(__x86_64__)
    return "amd64";
#elif defined(__aarch64__)
    return "arm64";
#elif defined(__riscv) && __riscv_xlen == 64
    return "riscv64";
#elif defined(__powerpc64__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    return "ppc64le";
#elif defined(__s390x__)
    return "s390x";
#elif defined(__arm__)
    return "arm";
#elif defined(__i386__)
    return "386";
#else
    return "unknown";
#endif
}

namespace {

constexpr const char* kIndexTypes[] = {"application/vnd.oci.image.index.v1+json",
                                       "application/vnd.docker.distribution.manifest.list.v2+json"};

Result<json> parse_json(const std::string& text, const std::string& what) {
    json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return plain_error(what + ": not valid JSON");
    if (!j.is_object() && !j.is_array()) return plain_error(what + ": not a JSON object");
    return j;
}

// Optional string field; a value of another type is an error, not a silent default.
Result<std::string> opt_string(const json& obj, const char* key, const std::string& what) {
    if (!obj.is_object() || !obj.contains(key) || obj[key].is_null()) return std::string();
    if (!obj[key].is_string()) return plain_error(what + ": " + key + " is not a string");
    return obj[key].get<std::string>();
}

Result<std::string> req_string(const json& obj, const char* key, const std::string& what) {
    auto s = opt_string(obj, key, what);
    if (s && s->empty()) return plain_error(what + ": no " + key);
    return s;
}

Result<std::vector<std::string>> opt_strings(const json& obj, const char* key,
                                             const std::string& what) {
    std::vector<std::string> out;
    if (!obj.is_object() || !obj.contains(key) || obj[key].is_null()) return out;
    if (!obj[key].is_array()) return plain_error(what + ": " + key + " is not a list");
    for (const auto& v : obj[key]) {
        if (!v.is_string())
            return plain_error(what + ": " + key + " holds something other than strings");
        out.push_back(v.get<std::string>());
    }
    return out;
}

// RFC 3339, as configs write "created": 2024-01-02T03:04:05.123456789Z or with an offset.
int64_t parse_created(const std::string& s) {
    int y, mo, d, h, mi, sec, n = 0;
    if (std::sscanf(s.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6)
        return 0;
    std::tm tm{};
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    int64_t t = ::timegm(&tm);
    size_t i = static_cast<size_t>(n);
    if (i < s.size() && s[i] == '.')
        for (i++; i < s.size() && s[i] >= '0' && s[i] <= '9'; i++) {
        }
    int oh, om;
    if (i < s.size() && (s[i] == '+' || s[i] == '-') &&
        std::sscanf(s.c_str() + i + 1, "%2d:%2d", &oh, &om) == 2)
        t -= (s[i] == '+' ? 1 : -1) * (oh * 3600 + om * 60);
    return t;
}

// The blob a descriptor names, checked against the descriptor's digest and size.
Result<const Member*> verified_blob(const ArchiveMembers& members, const json& desc,
                                    const std::string& kind, std::string* hex_out = nullptr) {
    auto digest = req_string(desc, "digest", kind + " descriptor");
    if (!digest) return digest.error();
    auto hex = parse_digest(*digest);
    if (!hex) return wrap(kind, hex.error());
    std::string label = kind + " sha256:" + *hex;
    const Member* m = members.find("blobs/sha256/" + *hex);
    if (!m) return plain_error(label + ": missing from the archive");
    if (m->sha256 != *hex)
        return plain_error(label + ": digest mismatch (got sha256:" + m->sha256 + ")");
    if (desc.contains("size") && desc["size"].is_number_integer() &&
        desc["size"].get<int64_t>() != m->size)
        return plain_error(label + ": size mismatch (descriptor says " +
                           std::to_string(desc["size"].get<int64_t>()) + " bytes, blob has " +
                           std::to_string(m->size) + ")");
    if (hex_out) *hex_out = *hex;
    return m;
}

bool valid_name(const std::string& n) {
    if (n.empty() || n.size() > 255) return false;
    for (unsigned char c : n)
        if (c <= ' ' || c == 0x7f) return false;
    return true;
}

void add_name(std::vector<std::string>& names, const std::string& ref) {
    if (!valid_name(ref)) return;
    std::string n = normalize_name(ref);
    for (const auto& have : names)
        if (have == n) return;
    names.push_back(std::move(n));
}

// The parts of a config blob the store keeps.
Status read_config(const ArchiveMembers& members, const std::string& member,
                   const std::string& label, ImageSpec& spec, std::vector<std::string>& diff_ids) {
    auto text = members.read(member);
    if (!text) return wrap(label, text.error());
    auto j = parse_json(*text, label);
    if (!j) return j.error();
    const json& rootfs = j->is_object() && j->contains("rootfs") ? (*j)["rootfs"] : json();
    auto type = opt_string(rootfs, "type", label + ": rootfs");
    if (!type) return type.error();
    if (*type != "layers")
        return plain_error(label + ": rootfs.type is '" + *type + "', not 'layers'");
    auto ids = opt_strings(rootfs, "diff_ids", label + ": rootfs");
    if (!ids) return ids.error();
    for (const auto& d : *ids) {
        auto hex = parse_digest(d);
        if (!hex) return wrap(label + ": rootfs.diff_ids", hex.error());
        diff_ids.push_back(*hex);
    }
    const json& c = j->contains("config") ? (*j)["config"] : json();
    std::string what = label + ": config";
    auto entrypoint = opt_strings(c, "Entrypoint", what);
    auto cmd = opt_strings(c, "Cmd", what);
    auto env = opt_strings(c, "Env", what);
    auto wd = opt_string(c, "WorkingDir", what);
    auto user = opt_string(c, "User", what);
    auto created = opt_string(*j, "created", label);
    if (!entrypoint) return entrypoint.error();
    if (!cmd) return cmd.error();
    if (!env) return env.error();
    if (!wd) return wd.error();
    if (!user) return user.error();
    if (!created) return created.error();
    spec.config = ImageConfig{*entrypoint, *cmd, *env, *wd, *user};
    spec.created_unix = parse_created(*created);
    return {};
}

class OciReader {
  public:
    OciReader(const ArchiveMembers& members, std::string repo)
        : members_(members), repo_(std::move(repo)) {}

    Result<std::vector<ImageSpec>> read() {
        auto text = members_.read("index.json");
        if (!text) return text.error();
        if (auto layout = members_.read("oci-layout"); layout) {
            auto j = parse_json(*layout, "oci-layout");
            if (!j) return j.error();
            auto version = opt_string(*j, "imageLayoutVersion", "oci-layout");
            if (!version) return version.error();
            if (!version->empty() && !starts_with(*version, "1."))
                return plain_error("oci-layout: unsupported imageLayoutVersion " + *version);
        }
        auto index = parse_json(*text, "index.json");
        if (!index) return index.error();
        KEEL_TRY(walk_index(*index, "index.json", {}, 0));
        return std::move(specs_);
    }

  private:
    static bool is_index(const std::string& media_type, const json& doc) {
        for (const char* t : kIndexTypes)
            if (media_type == t) return true;
        return media_type.empty() && doc.is_object() && doc.contains("manifests");
    }

    // Which descriptors of an index are for this machine: those without a platform, and
    // linux/<our architecture>. Attestations (unknown/unknown) never are.
    Status walk_index(const json& index, const std::string& label,
                      const std::vector<std::string>& names, int depth) {
        if (depth > 8) return plain_error(label + ": indexes nested too deep");
        if (!index.is_object() || !index.contains("manifests") || !index["manifests"].is_array())
            return plain_error(label + ": no manifests list");
        std::vector<std::string> other_platforms;
        size_t taken = 0;
        for (const auto& desc : index["manifests"]) {
            if (desc.contains("platform") && desc["platform"].is_object()) {
                auto os = opt_string(desc["platform"], "os", label + ": platform");
                auto arch = opt_string(desc["platform"], "architecture", label + ": platform");
                if (!os) return os.error();
                if (!arch) return arch.error();
                if (*os != "linux" || *arch != host_architecture()) {
                    other_platforms.push_back(*os + "/" + *arch);
                    continue;
                }
            }
            std::vector<std::string> desc_names = names;
            KEEL_TRY(names_from_annotations(desc, desc_names));
            KEEL_TRY(walk_descriptor(desc, desc_names, depth));
            taken++;
        }
        if (taken == 0 && !other_platforms.empty())
            return plain_error(label + ": no image for linux/" + host_architecture() + " (has " +
                               join(other_platforms, ", ") + ")");
        if (taken == 0) return plain_error(label + ": no manifests");
        return {};
    }

    Status names_from_annotations(const json& desc, std::vector<std::string>& names) {
        if (!desc.contains("annotations") || !desc["annotations"].is_object()) return {};
        const json& a = desc["annotations"];
        auto full = opt_string(a, "io.containerd.image.name", "annotations");
        auto ref = opt_string(a, "org.opencontainers.image.ref.name", "annotations");
        if (!full) return full.error();
        if (!ref) return ref.error();
        if (!full->empty()) {
            add_name(names, *full);
        } else if (!ref->empty()) {
            // A full reference, or (skopeo, the OCI spec's own example) a bare tag.
            if (ref->find_first_of(":/") != std::string::npos)
                add_name(names, *ref);
            else if (!repo_.empty())
                add_name(names, repo_ + ":" + *ref);
        }
        return {};
    }

    Status walk_descriptor(const json& desc, const std::vector<std::string>& names, int depth) {
        std::string hex;
        auto media_type = opt_string(desc, "mediaType", "descriptor");
        if (!media_type) return media_type.error();
        bool index_type = false;
        for (const char* t : kIndexTypes)
            index_type = index_type || *media_type == t;
        auto blob = verified_blob(members_, desc, index_type ? "index" : "manifest", &hex);
        if (!blob) return blob.error();
        std::string label = (index_type ? "index sha256:" : "manifest sha256:") + hex;
        std::string text;
        if (!read_file((*blob)->file.c_str(), text)) return sys_error("read " + label);
        auto doc = parse_json(text, label);
        if (!doc) return doc.error();
        if (is_index(*media_type, *doc)) return walk_index(*doc, label, names, depth + 1);
        return read_manifest(*doc, label, names);
    }

    Status read_manifest(const json& m, const std::string& label,
                         const std::vector<std::string>& names) {
        if (!m.is_object() || !m.contains("config") || !m.contains("layers") ||
            !m["layers"].is_array())
            return plain_error(label + ": not an image manifest (no config or layers)");
        ImageSpec spec;
        auto config = verified_blob(members_, m["config"], "config", &spec.id);
        if (!config) return config.error();
        std::vector<std::string> diff_ids;
        KEEL_TRY(read_config(members_, "blobs/sha256/" + spec.id, "config sha256:" + spec.id, spec,
                             diff_ids));
        if (diff_ids.size() != m["layers"].size())
            return plain_error(label + ": " + std::to_string(m["layers"].size()) +
                               " layers, but its config lists " + std::to_string(diff_ids.size()) +
                               " diff_ids");
        for (size_t i = 0; i < diff_ids.size(); i++) {
            const json& desc = m["layers"][i];
            auto media_type = opt_string(desc, "mediaType", label + ": layer");
            if (!media_type) return media_type.error();
            if (media_type->find("encrypted") != std::string::npos)
                return plain_error(label + ": encrypted layers are not supported (" + *media_type +
                                   ")");
            std::string hex;
            auto blob = verified_blob(members_, desc, "layer", &hex);
            if (!blob) return blob.error();
            spec.layers.push_back({"blobs/sha256/" + hex, diff_ids[i], "layer sha256:" + hex});
        }
        spec.names = names;
        merge(std::move(spec));
        return {};
    }

    // The same image reached twice (two names in index.json) is one image with both names.
    void merge(ImageSpec spec) {
        for (auto& have : specs_) {
            if (have.id != spec.id) continue;
            for (const auto& n : spec.names)
                add_name(have.names, n);
            return;
        }
        specs_.push_back(std::move(spec));
    }

    const ArchiveMembers& members_;
    std::string repo_;
    std::vector<ImageSpec> specs_;
};

// The file name says the digest in both docker save forms: <hex>.json (legacy) and
// blobs/sha256/<hex> (Docker 25 and later).
std::string digest_in_name(const std::string& member) {
    std::string base = member.substr(member.rfind('/') + 1);
    if (base.size() == 69 && base.ends_with(".json")) base.resize(64);
    return is_sha256_hex(base) ? base : std::string();
}

Result<std::vector<ImageSpec>> read_docker_save(const ArchiveMembers& members) {
    auto text = members.read("manifest.json");
    if (!text) return text.error();
    auto doc = parse_json(*text, "manifest.json");
    if (!doc) return doc.error();
    if (!doc->is_array() || doc->empty()) return plain_error("manifest.json: not a list of images");
    std::vector<ImageSpec> specs;
    for (const auto& entry : *doc) {
        auto config = req_string(entry, "Config", "manifest.json");
        auto tags = opt_strings(entry, "RepoTags", "manifest.json");
        auto layers = opt_strings(entry, "Layers", "manifest.json");
        if (!config) return config.error();
        if (!tags) return tags.error();
        if (!layers) return layers.error();
        std::string label = "config " + *config;
        const Member* m = members.find(*config);
        if (!m) return plain_error(label + ": missing from the archive");
        if (auto named = digest_in_name(*config); !named.empty() && named != m->sha256)
            return plain_error(label + ": digest mismatch (got sha256:" + m->sha256 + ")");
        ImageSpec spec;
        spec.id = m->sha256;
        std::vector<std::string> diff_ids;
        KEEL_TRY(read_config(members, *config, label, spec, diff_ids));
        if (diff_ids.size() != layers->size())
            return plain_error("manifest.json: " + std::to_string(layers->size()) +
                               " layers, but " + label + " lists " +
                               std::to_string(diff_ids.size()) + " diff_ids");
        for (size_t i = 0; i < layers->size(); i++) {
            const std::string& name = (*layers)[i];
            const Member* blob = members.find(name);
            if (!blob) return plain_error("layer " + name + ": missing from the archive");
            if (auto named = digest_in_name(name); !named.empty() && named != blob->sha256)
                return plain_error("layer " + name +
                                   ": digest mismatch (got sha256:" + blob->sha256 + ")");
            spec.layers.push_back({name, diff_ids[i], "layer " + name});
        }
        for (const auto& t : *tags)
            add_name(spec.names, t);
        bool merged = false;
        for (auto& have : specs)
            if (have.id == spec.id) {
                for (const auto& n : spec.names)
                    add_name(have.names, n);
                merged = true;
            }
        if (!merged) specs.push_back(std::move(spec));
    }
    return specs;
}

// Docker 25 and later write both forms; its manifest.json has the RepoTags even when
// index.json's annotations were left out (an image saved by id and tag).
void add_repo_tags(const ArchiveMembers& members, std::vector<ImageSpec>& specs) {
    auto text = members.read("manifest.json");
    if (!text) return;
    json doc = json::parse(*text, nullptr, false);
    if (!doc.is_array()) return;
    for (const auto& entry : doc) {
        auto config = opt_string(entry, "Config", "");
        auto tags = opt_strings(entry, "RepoTags", "");
        if (!config || !tags) continue;
        const Member* m = members.find(*config);
        if (!m) continue;
        for (auto& spec : specs)
            if (spec.id == m->sha256)
                for (const auto& t : *tags)
                    add_name(spec.names, t);
    }
}

} // namespace

Result<std::vector<ImageSpec>> read_image_specs(const ArchiveMembers& members,
                                                const std::string& repo_for_tags) {
    if (members.find("index.json")) {
        auto specs = OciReader(members, repo_for_tags).read();
        if (specs) add_repo_tags(members, *specs);
        return specs;
    }
    if (members.find("manifest.json")) return read_docker_save(members);
    return plain_error("not an OCI layout or docker save archive (no index.json or manifest.json)");
}

} // namespace keel::image
