#include "runtime/state.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <ctime>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace keel::runtime::state {

using nlohmann::json;

const char* phase_name(Phase p) {
    switch (p) {
    case Phase::created:
        return "created";
    case Phase::running:
        return "running";
    case Phase::stopped:
        return "stopped";
    }
    return "unknown";
}

Status check_id(const std::string& id) {
    bool ok = !id.empty() && id.size() <= 128 && id[0] != '.' &&
              std::all_of(id.begin(), id.end(), [](char c) {
                  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                         (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.';
              });
    if (!ok)
        return plain_error(fmt::format(
            "invalid container id '{}': use letters, digits, '_', '-' and '.' (not first)", id));
    return {};
}

static Status mkdir_p(const std::string& path, mode_t mode) {
    std::string cur;
    for (size_t i = 1; i <= path.size(); ++i) {
        if (i != path.size() && path[i] != '/') continue;
        cur = path.substr(0, i);
        if (::mkdir(cur.c_str(), mode) < 0 && errno != EEXIST) return sys_error("mkdir " + cur);
    }
    return {};
}

Status Store::create(const std::string& id) const {
    KEEL_TRY(check_id(id));
    KEEL_TRY(mkdir_p(root_, 0700));
    if (::mkdir(dir(id).c_str(), 0700) < 0) {
        if (errno == EEXIST) return plain_error(fmt::format("container {} already exists", id));
        return sys_error("mkdir " + dir(id));
    }
    return {};
}

Status Store::save(const ContainerState& st) const {
    json j = {{"id", st.id},
              {"pid", st.pid},
              {"starttime", st.starttime},
              {"bundle", st.bundle},
              {"cgroup", st.cgroup},
              {"created", st.created},
              {"annotations", st.annotations}};
    std::string path = dir(st.id) + "/state.json";
    if (!write_file_atomic(path, j.dump() + "\n", 0600, Durability::volatile_))
        return sys_error("write " + path);
    return {};
}

Result<ContainerState> Store::load(const std::string& id) const {
    KEEL_TRY(check_id(id));
    std::string path = dir(id) + "/state.json", text;
    if (!read_file(path.c_str(), text)) {
        if (errno == ENOENT) return plain_error(fmt::format("container {} does not exist", id));
        return sys_error("read " + path);
    }
    json j = json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_object()) return plain_error(path + ": corrupt state file");
    try {
        ContainerState st;
        st.id = j.at("id").get<std::string>();
        st.pid = j.at("pid").get<pid_t>();
        st.starttime = j.at("starttime").get<unsigned long long>();
        st.bundle = j.at("bundle").get<std::string>();
        st.cgroup = j.at("cgroup").get<std::string>();
        st.created = j.at("created").get<std::string>();
        st.annotations = j.at("annotations").get<std::map<std::string, std::string>>();
        return st;
    } catch (const json::exception& e) {
        return plain_error(fmt::format("{}: corrupt state file: {}", path, e.what()));
    }
}

Status Store::remove(const std::string& id) const {
    std::string d = dir(id);
    for (const char* f : {"/exec.fifo", "/state.json"})
        if (::unlink((d + f).c_str()) < 0 && errno != ENOENT) return sys_error("remove " + d + f);
    if (::rmdir(d.c_str()) < 0 && errno != ENOENT) return sys_error("remove " + d);
    return {};
}

std::vector<std::string> Store::list() const {
    std::vector<std::string> ids;
    DIR* d = ::opendir(root_.c_str());
    if (!d) return ids;
    while (dirent* e = ::readdir(d))
        if (e->d_name[0] != '.' && e->d_type == DT_DIR) ids.emplace_back(e->d_name);
    ::closedir(d);
    std::sort(ids.begin(), ids.end());
    return ids;
}

unsigned long long process_starttime(pid_t pid) {
    if (pid <= 0) return 0;
    std::string stat;
    if (!read_file(fmt::format("/proc/{}/stat", pid).c_str(), stat)) return 0;
    // The command name may contain spaces and parentheses: fields are counted after the last ')'.
    auto close = stat.rfind(')');
    if (close == std::string::npos) return 0;
    size_t pos = close + 2; // field 3 (state) starts here
    for (int field = 3; field < 22; ++field) {
        pos = stat.find(' ', pos);
        if (pos == std::string::npos) return 0;
        ++pos;
    }
    return std::strtoull(stat.c_str() + pos, nullptr, 10);
}

Fd open_process(const ContainerState& st) {
    if (st.pid <= 0) return Fd();
    Fd fd(static_cast<int>(::syscall(SYS_pidfd_open, st.pid, 0)));
    // Checked after the pidfd is held: from then on the pid cannot be reused under us.
    if (!fd || process_starttime(st.pid) != st.starttime) return Fd();
    std::string status;
    if (read_file(fmt::format("/proc/{}/stat", st.pid).c_str(), status)) {
        auto close = status.rfind(')');
        if (close != std::string::npos && close + 2 < status.size() && status[close + 2] == 'Z')
            return Fd(); // exited, waiting for its parent to reap it
    }
    return fd;
}

Phase phase_of(const Store& store, const ContainerState& st) {
    if (!open_process(st)) return Phase::stopped;
    struct stat sb {};
    if (::stat(store.fifo(st.id).c_str(), &sb) == 0) return Phase::created;
    return Phase::running;
}

std::string now_rfc3339() {
    timespec ts{};
    ::clock_gettime(CLOCK_REALTIME, &ts);
    tm utc{};
    ::gmtime_r(&ts.tv_sec, &utc);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &utc);
    return fmt::format("{}.{:09}Z", buf, ts.tv_nsec);
}

std::string to_json(const ContainerState& st, Phase phase, bool pretty) {
    nlohmann::ordered_json j;
    j["ociVersion"] = "1.0.2";
    j["id"] = st.id;
    j["status"] = phase_name(phase);
    j["pid"] = phase == Phase::stopped ? 0 : st.pid;
    j["bundle"] = st.bundle;
    j["created"] = st.created;
    j["annotations"] = st.annotations;
    return pretty ? j.dump(2) : j.dump();
}

} // namespace keel::runtime::state
