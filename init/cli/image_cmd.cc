// `keel image import|list|rm`: the user runtime's OCI image store. An import hands keeld the
// open archive over the socket, so the file may be anywhere the caller can read, in a mount
// namespace the user runtime cannot see.
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>

#include <fmt/format.h>

#include "cli/commands.h"
#include "cli/options.h"
#include "common/fd.h"
#include "common/strings.h"

namespace keel::cli {

using nlohmann::json;

static const char* kImageUsage = R"(usage: keel image COMMAND

  import FILE        an OCI image layout archive or a `docker save` tarball
                     (plain, gzip or zstd)
  list [--json]      the images in the store (also: keel images)
  rm NAME|ID...      remove images no workload uses
)";

static int fail(const std::string& msg, int code = 1) {
    std::fprintf(stderr, "keel: %s\n", msg.c_str());
    return code;
}

static std::string human_size(int64_t b) {
    if (b < 1024 * 1024) return fmt::format("{:.1f}kB", double(b) / 1024);
    if (b < 1024ll * 1024 * 1024) return fmt::format("{:.1f}MB", double(b) / (1024 * 1024));
    return fmt::format("{:.2f}GB", double(b) / (1024.0 * 1024 * 1024));
}

static std::string first_name(const json& img) {
    return img["names"].empty() ? std::string("<none>") : img["names"][0].get<std::string>();
}

int image_main(const std::vector<std::string>& argv) {
    auto top = Options::parse({"image", {{"help", "h"}}, true}, argv);
    if (!top) return fail("image: " + top.error().str(), 2);
    const std::vector<std::string>& args = top->positional();
    if (args.empty() || top->flag("help") || args[0] == "help") {
        bool asked = top->flag("help") || !args.empty();
        std::fputs(kImageUsage, asked ? stdout : stderr);
        return asked ? 0 : 2;
    }
    const std::string& cmd = args[0];
    bool listing = cmd == "list" || cmd == "ls";
    auto sub = Options::parse(
        {"image " + cmd, listing ? std::vector<OptionSpec>{{"json"}} : std::vector<OptionSpec>{}},
        std::vector<std::string>(args.begin() + 1, args.end()));
    if (!sub) return fail("image " + cmd + ": " + sub.error().str(), 2);
    const std::vector<std::string>& rest = sub->positional();
    if (cmd == "import" || cmd == "load") {
        if (rest.size() != 1) return fail("usage: keel image import FILE", 2);
        Fd f(::open(rest[0].c_str(), O_RDONLY | O_CLOEXEC));
        if (!f) return fail(sys_error(rest[0]).str());
        auto r = user_request({{"cmd", "image_import"}, {"file", rest[0]}}, f.get());
        if (!r) return fail(r.error().str());
        for (const auto& img : (*r)["images"])
            std::printf("imported %s (sha256:%s, %zu layer%s)\n",
                        join(img["names"].get<std::vector<std::string>>(), ", ").c_str(),
                        img["id"].get<std::string>().substr(0, 12).c_str(),
                        img["layers"].get<size_t>(), img["layers"].get<size_t>() == 1 ? "" : "s");
        return 0;
    }
    if (listing) {
        bool as_json = sub->flag("json");
        if (!rest.empty()) return fail("image list: unexpected argument " + rest[0], 2);
        auto r = user_request({{"cmd", "image_list"}});
        if (!r) return fail(r.error().str());
        if (as_json) {
            std::puts((*r)["images"].dump().c_str());
            return 0;
        }
        std::printf("%-32s %-12s %-10s %-7s %s\n", "NAME", "ID", "SIZE", "LAYERS", "CREATED");
        for (const auto& img : (*r)["images"]) {
            int64_t created = img.value("created", int64_t(0));
            // One row per name, as `docker images` shows tags.
            std::vector<std::string> names = img["names"].get<std::vector<std::string>>();
            if (names.empty()) names.push_back(first_name(img));
            for (const auto& n : names)
                std::printf("%-32s %-12s %-10s %-7zu %s\n", n.c_str(),
                            img["id"].get<std::string>().substr(0, 12).c_str(),
                            human_size(img.value("size", int64_t(0))).c_str(),
                            img["layers"].get<size_t>(), created ? age(created).c_str() : "-");
        }
        return 0;
    }
    if (cmd == "rm" || cmd == "remove") {
        if (rest.empty()) return fail("usage: keel image rm NAME|ID...", 2);
        int rc = 0;
        for (const auto& n : rest) {
            auto r = user_request({{"cmd", "image_rm"}, {"name", n}});
            if (!r) {
                std::fprintf(stderr, "keel: %s\n", r.error().str().c_str());
                rc = 1;
                continue;
            }
            std::printf("removed %s (sha256:%s)\n", first_name((*r)["removed"]).c_str(),
                        (*r)["removed"]["id"].get<std::string>().substr(0, 12).c_str());
        }
        return rc;
    }
    return fail("unknown image command '" + cmd + "'\n" + kImageUsage, 2);
}

} // namespace keel::cli
