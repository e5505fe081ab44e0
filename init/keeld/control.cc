// The control socket: the CLI's requests, one JSON line each, after a version handshake.
// Only root and the `keel` admin group may connect (SO_PEERCRED, SO_PEERGROUPS). A malformed or
// oversized message gets an error reply and closes that connection only.
#include <dirent.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <functional>
#include <set>

#include <cstring>

#include <fmt/format.h>

#include "common/clock.h"
#include "common/contract.h"
#include "common/log.h"
#include "common/strings.h"
#include "config/config.h"
#include "keeld/daemon.h"
#include "keeld/protocol.h"
#include "runtime/oci.h"

namespace keel::keeld {

using nlohmann::json;

namespace {
json error(const std::string& msg) {
    return {{"ok", false}, {"error", msg}};
}

// Root, or a member of the admin group (primary or supplementary: SO_PEERGROUPS).
bool admitted(int fd, gid_t admin) {
    ucred cred{};
    socklen_t len = sizeof cred;
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) return false;
    if (cred.uid == 0) return true;
    if (admin == gid_t(-1)) return false;
    if (cred.gid == admin) return true;
    gid_t groups[256];
    len = sizeof groups;
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) < 0) return false;
    for (size_t i = 0; i < len / sizeof(gid_t); ++i)
        if (groups[i] == admin) return true;
    return false;
}
} // namespace

gid_t admin_gid() {
    std::string text;
    if (!read_file("/etc/group", text)) return gid_t(-1);
    for (const auto& line : split(text, '\n')) {
        auto f = split(line, ':');
        if (f.size() >= 3 && f[0] == "keel" && !f[2].empty() &&
            f[2].find_first_not_of("0123456789") == std::string::npos)
            return gid_t(std::stoul(f[2]));
    }
    return gid_t(-1);
}

void Daemon::accept_client() noexcept {
    for (;;) {
        int fd = ::accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) return;
        // The user runtime's socket is reachable only where /run/keel/user is bound (the
        // console, the host's root); its peers come from outside its user namespace, where
        // every uid but its own root reads as the overflow id, so the directory is the check.
        if (cfg_.instance == "system" && !admitted(fd, admin_gid_)) {
            protocol::send(
                fd,
                error("permission denied: keeld's control socket is for root and the keel group"));
            ::close(fd);
            continue;
        }
        try {
            clients_[fd].fd.reset(fd);
            epoll_event ev{};
            ev.events = EPOLLIN;
            ev.data.u64 = (uint64_t(3) << 32) | uint32_t(fd);
            ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev);
        } catch (...) {
            ::close(fd);
        }
    }
}

void Daemon::on_client(int fd) noexcept {
    auto it = clients_.find(fd);
    if (it == clients_.end()) return;
    Client& c = it->second;
    bool close_it = false;
    try {
        char tmp[4096];
        for (;;) {
            ssize_t n = recv_with_fds(fd, tmp, sizeof tmp, c.fds, 4); // more is a confused client
            if (n == 0) {
                close_it = true;
                break;
            }
            if (n < 0) {
                close_it = errno != EAGAIN && errno != EINTR;
                break;
            }
            c.buf.append(tmp, size_t(n));
            if (c.buf.size() > protocol::kMaxMessage) break;
        }
        for (size_t nl; !close_it && (nl = c.buf.find('\n')) != std::string::npos;) {
            std::string line = c.buf.substr(0, nl);
            c.buf.erase(0, nl + 1);
            auto parsed = protocol::parse_request(line);
            json reply;
            if (!parsed) {
                reply = error(parsed.error().str());
                close_it = true;
            } else if (!c.handshaken) {
                if (auto hello = protocol::check_hello(*parsed); !hello) {
                    reply = error(hello.error().str());
                    close_it = true;
                } else {
                    c.handshaken = true;
                    reply = {{"ok", true},
                             {"version", protocol::kVersion},
                             {"min_version", protocol::kMinVersion},
                             {"instance", cfg_.instance}};
                }
            } else {
                current_client_ = fd;
                reply = handle(*parsed, close_it);
                current_client_ = -1;
            }
            if (!reply.is_null())
                protocol::send(fd, reply, reply_fd_.get()); // null: answered later (wait)
            reply_fd_.reset();
        }
        if (c.buf.size() > protocol::kMaxMessage) {
            protocol::send(fd, error(fmt::format("message over {} bytes", protocol::kMaxMessage)));
            close_it = true;
        }
    } catch (...) {
        close_it = true; // an allocation failure costs this connection, not keeld
    }
    if (close_it) {
        ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
        clients_.erase(fd);
        std::erase_if(waiters_, [fd](const Waiter& w) { return w.fd == fd; });
        if (import_ && import_->client == fd) import_->client = -1;
    }
}

json Daemon::describe(const Service& s, bool full) const {
    json j = {{"name", s.name},
              {"enabled", s.enabled},
              {"state", state_name(s.state)},
              {"pid", s.has_container ? s.container.pid() : 0},
              {"uptime_s", s.has_container ? (now_ms() - s.started_ms) / 1000 : 0},
              {"restarts", s.restarts},
              {"error", s.error},
              {"last_exit", s.last_exit}};
    if (s.workload) {
        j["image"] = s.image;
        j["created"] = s.created_unix;
        if (s.exit_code) j["exit_code"] = *s.exit_code;
        j["oom_killed"] = s.oom_killed;
        if (s.spec) j["command"] = s.spec->command;
    }
    if (!full || !s.spec) return j;
    const auto& sp = *s.spec;
    json caps = json::array();
    for (int c : sp.capabilities)
        caps.push_back(runtime::oci::capability_name(c));
    json host = json::array();
    if (sp.host.net) host.push_back("net");
    if (sp.host.pid) host.push_back("pid");
    if (sp.host.ipc) host.push_back("ipc");
    if (sp.host.uts) host.push_back("uts");
    j["image"] = sp.image;
    j["command"] = sp.command;
    j["capabilities"] = caps;
    j["host_namespaces"] = host;
    // What the kernel says, not what the file asked for: each namespace of the container's
    // PID 1, "own" or "host" (keeld's), by the namespace's inode.
    if (s.has_container) {
        json ns = json::object();
        for (const char* t : {"pid", "net", "mnt", "uts", "ipc", "cgroup", "user"}) {
            char mine[64] = {}, theirs[64] = {};
            std::string p = fmt::format("/proc/{}/ns/{}", s.container.pid(), t);
            ssize_t a =
                ::readlink(fmt::format("/proc/self/ns/{}", t).c_str(), mine, sizeof mine - 1);
            ssize_t b = ::readlink(p.c_str(), theirs, sizeof theirs - 1);
            if (a > 0 && b > 0)
                ns[t] = {{"id", std::string(theirs)},
                         {"shared_with_host", std::string(mine) == theirs}};
        }
        j["namespaces"] = ns;
        // The real uids of every process in its cgroup subtree, as the host sees them: for a
        // service in a user namespace, the unprivileged ids its root and its nested workloads
        // are on the host.
        std::set<std::string> uids;
        std::function<void(const std::string&)> walk = [&](const std::string& dir) {
            std::string procs;
            if (read_file((dir + "/cgroup.procs").c_str(), procs))
                for (const auto& pid : split(procs, '\n')) {
                    std::string st;
                    if (pid.empty() || !read_file(("/proc/" + pid + "/status").c_str(), st))
                        continue;
                    auto at = st.find("\nUid:\t");
                    if (at != std::string::npos)
                        uids.insert(st.substr(at + 6, st.find('\t', at + 6) - at - 6));
                }
            if (DIR* d = ::opendir(dir.c_str())) {
                std::vector<std::string> subs;
                while (dirent* e = ::readdir(d))
                    if (e->d_type == DT_DIR && e->d_name[0] != '.')
                        subs.push_back(dir + "/" + e->d_name);
                ::closedir(d);
                for (const auto& sub : subs)
                    walk(sub);
            }
        };
        if (!s.container.cgroup_path().empty()) walk(s.container.cgroup_path());
        j["host_uids"] = std::vector<std::string>(uids.begin(), uids.end());
    }
    j["user"] = sp.user;
    json res = json::object();
    if (sp.resources.memory_max) res["memory"] = *sp.resources.memory_max;
    if (sp.resources.pids_max) res["pids"] = *sp.resources.pids_max;
    if (sp.resources.cpu_quota) res["cpu_quota_us"] = *sp.resources.cpu_quota;
    j["resources"] = res;
    j["file"] = sp.file;
    j["log"] = s.log ? s.log->tail(10) : std::vector<std::string>{};
    return j;
}

json Daemon::handle(const json& req, bool& close_after) {
    std::string cmd = req.value("cmd", "");
    std::string name = req.value("name", "");
    auto need = [&](Service*& s) -> std::optional<json> {
        s = find(name);
        if (s) return std::nullopt;
        std::vector<std::string> names;
        for (const auto& [n, sv] : services_)
            names.push_back(n);
        std::string near = closest(name, names);
        return error(fmt::format("unknown service '{}'{}", name,
                                 near.empty() ? "" : fmt::format(" (did you mean '{}'?)", near)));
    };
    Service* s = nullptr;
    if (cmd == "list") {
        json all = json::array();
        for (const auto& [n, sv] : services_)
            all.push_back(describe(sv, false));
        return {{"ok", true}, {"services", all}};
    }
    if (cmd == "status") {
        if (auto e = need(s)) return *e;
        return {{"ok", true}, {"service", describe(*s, true)}};
    }
    if (cmd == "logs") {
        if (auto e = need(s)) return *e;
        if (req.contains("since")) {
            uint64_t next = 0;
            auto lines = s->log->since(req.value("since", uint64_t(0)), next);
            return {{"ok", true}, {"lines", lines}, {"next", next}};
        }
        size_t lines = req.value("lines", 50);
        return {{"ok", true}, {"lines", s->log->tail(lines)}, {"next", s->log->last_seq()}};
    }
    if (cmd == "start" || cmd == "stop" || cmd == "restart") {
        if (auto e = need(s)) return *e;
        if (!s->spec) return error(fmt::format("service {} is invalid: {}", name, s->error));
        int timeout = req.value("timeout", s->spec->stop_timeout_s);
        if (cmd != "start") stop(*s, timeout);
        s->start_after_stop = cmd == "restart" && (s->has_container || s->pending);
        if (cmd == "stop") return {{"ok", true}, {"service", describe(*s, false)}};
        // start / restart: clear the hold and failures; the loop starts it once stopped.
        s->hold = false;
        s->failures = 0;
        if (s->state == State::failed || s->state == State::disabled) s->state = State::stopped;
        if (!s->enabled) {
            // Starting a disabled service runs it now without enabling it at boot.
            s->enabled = true;
            s->hold = false;
        }
        schedule();
        return {{"ok", true}, {"service", describe(*s, false)}};
    }
    if (cmd == "enable" || cmd == "disable") {
        if (auto e = need(s)) return *e;
        bool on = cmd == "enable";
        if (on && !s->spec) return error(fmt::format("service {} is invalid: {}", name, s->error));
        if (auto st = persist_enabled(name, on); !st) return error(st.error().str());
        s->enabled = on;
        if (on) {
            s->hold = false;
            if (s->state == State::disabled || s->state == State::failed) s->state = State::stopped;
            s->failures = 0;
            schedule();
        } else {
            stop(*s, s->spec ? s->spec->stop_timeout_s : 10);
            if (!s->has_container) s->state = State::disabled;
        }
        return {{"ok", true}, {"service", describe(*s, false)}};
    }
    if (cmd.rfind("config_", 0) == 0) return handle_config(cmd, req);
    if (cmd == "info") {
        // The daemon's own footprint (benchmarks): no shim per container, so this is all of it.
        std::string st;
        read_file("/proc/self/status", st);
        auto field = [&](const char* k) -> int64_t {
            auto at = st.find(std::string("\n") + k + ":");
            return at == std::string::npos
                       ? 0
                       : std::strtoll(st.c_str() + at + std::strlen(k) + 2, nullptr, 10);
        };
        size_t running = 0;
        for (const auto& [n, sv] : services_)
            running += sv.has_container ? 1 : 0;
        return {{"ok", true},
                {"instance", cfg_.instance},
                {"pid", ::getpid()},
                {"rss_kb", field("VmRSS")},
                {"hwm_kb", field("VmHWM")},
                {"containers", services_.size()},
                {"running", running}};
    }
    if (cmd.rfind("image_", 0) == 0) return handle_image(cmd, req);
    if (cmd == "audit") return handle_audit();
    if (cmd == "run" || cmd == "kill" || cmd == "rm" || cmd == "exec" || cmd == "exec_output" ||
        cmd == "wait")
        return handle_workload(cmd, req);
    if (cmd == "poweroff" || cmd == "reboot") {
        if (cfg_.instance != "system")
            return error("only the system instance powers off or reboots the machine");
        // PID 1 does the ordered shutdown; it asks us to stop our services first.
        int sig = cmd == "reboot" ? contract::kPid1Reboot : contract::kPid1Poweroff;
        if (::kill(1, sig) < 0) return error(sys_error("signal PID 1").str());
        return {{"ok", true}};
    }
    close_after = false;
    return error(fmt::format("unknown command '{}'", cmd));
}

// When a changed key takes effect: said by `keel config set`, so nobody waits for a change
// that needs a reboot.
static std::string applies(const std::string& key) {
    if (key.rfind("network.", 0) == 0)
        return "when the network service restarts (keel service restart network)";
    if (key.rfind("ssh.", 0) == 0) return "when the sshd service restarts";
    if (key == "allow_privileged") return "at the next start of a service";
    if (key.rfind("services.", 0) == 0) return "now";
    if (key == "modules.lock")
        return "only from the kernel command line (keel.config.modules.lock=)";
    return "at the next boot";
}

json Daemon::handle_config(const std::string& cmd, const json& req) {
    std::string key = req.value("key", "");
    if (cmd == "config_export") {
        json r = {{"ok", true}, {"yaml", config::to_yaml(config_)}};
        if (!config_error_.empty())
            r["warning"] = config_error_ + "; the last good configuration is in use";
        return r;
    }
    if (cmd == "config_validate") {
        if (req.contains("text")) {
            auto doc = config::parse(req.value("text", ""), req.value("file", "config"));
            return doc ? json{{"ok", true}} : error(doc.error().str());
        }
        std::string path = cfg_.state_dir + "/config.yml", text;
        struct stat st {};
        if (::stat(path.c_str(), &st) < 0)
            return {{"ok", true}, {"note", path + " does not exist: the defaults apply"}};
        if (!read_file(path.c_str(), text)) return error(sys_error("read " + path).str());
        auto doc = config::parse(text, path);
        return doc ? json{{"ok", true}, {"note", path + " is valid"}} : error(doc.error().str());
    }
    if (cmd == "config_get") {
        auto v = config::get(config_, key);
        if (!v) {
            auto typed = config::value_for(key, ""); // for the "unknown key, did you mean" message
            if (!typed && !config::find_key(key)) return error(typed.error().str());
            return error("'" + key + "' is not set");
        }
        return {{"ok", true},
                {"value", config::to_text(*v)},
                {"yaml", config::to_yaml(*v)},
                {"scalar", v->IsScalar()}};
    }
    if (cmd == "config_set") {
        auto v = config::value_for(key, req.value("value", ""));
        if (!v) return error(v.error().str());
        // A service's enabled state is applied at once, as `keel service enable|disable` does.
        if (key.rfind("services.", 0) == 0) {
            std::string name = key.substr(9, key.rfind('.') - 9);
            bool close_after = false;
            json r = handle({{"cmd", v->as<bool>() ? "enable" : "disable"}, {"name", name}},
                            close_after);
            if (!r.value("ok", false)) return r;
        } else if (auto st = change_overlay(key, *v); !st) {
            return error(st.error().str());
        }
        return {{"ok", true}, {"value", config::to_text(*v)}, {"applies", applies(key)}};
    }
    return error("unknown command '" + cmd + "'");
}

} // namespace keel::keeld
