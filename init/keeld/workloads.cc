// The user instance: workloads (`keel run`), each a container on an overlay of its image,
// nested inside the user-runtime service's user namespace. A workload is a Service whose
// ServiceSpec is made from the run request instead of a file, so supervision, logs and
// stop are the system instance's own code.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <random>

#include <fmt/format.h>

#include "common/clock.h"
#include "common/fd.h"
#include "common/log.h"
#include "common/strings.h"
#include "image/fs.h"
#include "keeld/daemon.h"
#include "keeld/protocol.h"
#include "runtime/capabilities.h"
#include "runtime/cgroup.h"
#include "runtime/namespaces.h"
#include "runtime/oci.h"

namespace keel::keeld {

using nlohmann::json;

namespace {

json error(const std::string& msg) {
    return {{"ok", false}, {"error", msg}};
}

bool valid_name(const std::string& n) {
    if (n.empty() || n.size() > 63 || !std::isalnum(static_cast<unsigned char>(n[0]))) return false;
    for (char c : n)
        if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.')
            return false;
    return true;
}

std::string random_name() {
    static const char* adj[] = {"brave", "calm",  "eager",  "fast",  "keen",
                                "quiet", "sharp", "steady", "swift", "bold"};
    static const char* noun[] = {"hull", "mast", "sail",  "deck", "helm",
                                 "oar",  "bow",  "stern", "buoy", "anchor"};
    std::random_device rd;
    return fmt::format("{}-{}-{}", adj[rd() % 10], noun[rd() % 10], rd() % 1000);
}

int64_t unix_now() {
    return int64_t(::time(nullptr));
}

// A `run` request, checked as a whole before anything is made for it: every field has the
// type the CLI sends, and a field keeld does not know is refused rather than ignored.
Status check_run_request(const json& req) {
    enum Kind { text, texts, flag, count, number };
    static const std::pair<const char*, Kind> fields[] = {
        {"cmd", text},       {"name", text},     {"image", text}, {"user", text},
        {"net", text},       {"command", texts}, {"env", texts},  {"volumes", texts},
        {"cap_add", texts},  {"rm", flag},       {"stdin", flag}, {"tty", flag},
        {"read_only", flag}, {"memory", count},  {"pids", count}, {"cpus", number}};
    for (const auto& [key, value] : req.items()) {
        auto f = std::find_if(std::begin(fields), std::end(fields),
                              [&](const auto& p) { return key == p.first; });
        if (f == std::end(fields)) return plain_error("run: unknown field '" + key + "'");
        bool ok = false;
        const char* want = "";
        switch (f->second) {
        case text:
            ok = value.is_string(), want = "a string";
            break;
        case flag:
            ok = value.is_boolean(), want = "true or false";
            break;
        case count:
            ok = value.is_number_integer() && value.get<int64_t>() >= 0,
            want = "a non-negative integer";
            break;
        case number:
            ok = value.is_number() && value.get<double>() > 0, want = "a positive number";
            break;
        case texts:
            ok = value.is_array() && std::all_of(value.begin(), value.end(),
                                                 [](const json& v) { return v.is_string(); });
            want = "a list of strings";
            break;
        }
        if (!ok)
            return plain_error(
                fmt::format("run: '{}' must be {}, got {}", key, want, value.dump()));
    }
    return {};
}

} // namespace

// Images come from the OCI store under the runtime's storage (images/). The archives that
// ship with the user-runtime service's image (/usr/share/keel/workload-images/*.tar: busybox)
// are imported once, on the first start with an empty store; an image the user removes later
// stays removed.
void Daemon::seed_images() {
    const std::string marker = images_->root() + "/.seeded";
    if (::access(marker.c_str(), F_OK) == 0) return;
    const std::string dir = "/usr/share/keel/workload-images";
    std::vector<std::string> archives;
    if (DIR* d = ::opendir(dir.c_str())) {
        while (dirent* e = ::readdir(d))
            if (std::string_view(e->d_name).ends_with(".tar"))
                archives.push_back(dir + "/" + e->d_name);
        ::closedir(d);
    }
    std::sort(archives.begin(), archives.end());
    bool all = true;
    for (const auto& a : archives)
        if (auto r = images_->import(a); !r) {
            log::warn("image store: the shipped image {} was not imported: {}", a, r.error().str());
            all = false;
        }
    // Retried at the next start until every shipped image is in.
    if (all) (void)write_file_atomic(marker, "", 0600);
}

// The user runtime is PID 1 of its container, and its cgroup namespace's root is the
// delegated subtree. cgroup v2 lets a cgroup hand controllers to children only while it has
// no processes of its own, so keeld moves itself into a leaf first.
void Daemon::setup_user_instance() {
    for (const char* d : {"", "/containers", "/log"})
        ::mkdir((cfg_.state_dir + d).c_str(), 0700);
    images_ = std::make_unique<image::Store>(cfg_.state_dir + "/images");
    seed_images();
    const std::string cg = "/sys/fs/cgroup";
    if (::access((cg + "/cgroup.subtree_control").c_str(), W_OK) == 0) {
        ::mkdir((cg + "/keeld").c_str(), 0755);
        if (!write_file((cg + "/keeld/cgroup.procs").c_str(), std::to_string(::getpid())))
            log::warn("cgroup: cannot move keeld into {}/keeld: {}", cg, std::strerror(errno));
        std::string avail, enable;
        read_file((cg + "/cgroup.controllers").c_str(), avail);
        for (const auto& c : split(std::string(trim(avail)), ' '))
            if (c == "memory" || c == "pids" || c == "cpu")
                enable += (enable.empty() ? "+" : " +") + c;
        if (!enable.empty() && !write_file((cg + "/cgroup.subtree_control").c_str(), enable))
            log::warn("cgroup: cannot enable {}: {}", enable, std::strerror(errno));
    } else {
        log::warn("cgroup: {} is not writable: workloads get no resource limits", cg);
    }
}

Result<std::string> Daemon::create_workload(const json& req) {
    if (auto ok = check_run_request(req); !ok) return ok.error();
    std::string name = req.value("name", "");
    if (name.empty()) {
        do
            name = random_name();
        while (services_.count(name));
    }
    if (!valid_name(name))
        return plain_error("invalid name '" + name + "' (letters, digits, '-', '_', '.')");
    if (services_.count(name))
        return plain_error("a workload named '" + name + "' already exists (keel rm " + name + ")");
    std::string image = req.value("image", "");
    if (image.empty()) return plain_error("no image");

    if (!images_) return plain_error("no image store");
    auto found = images_->find(image);
    if (!found) return found.error();
    const image::ImageConfig& cfg = found->config;

    service::ServiceSpec sp;
    sp.name = name;
    sp.file = "workload " + name;
    std::string dir = cfg_.state_dir + "/containers/" + name;
    sp.image = dir + "/rootfs";
    auto cmd = req.value("command", std::vector<std::string>{});
    // Docker's rule: the entrypoint, then the given command or else the image's Cmd.
    sp.command = cfg.entrypoint;
    const auto& args = cmd.empty() ? cfg.cmd : cmd;
    sp.command.insert(sp.command.end(), args.begin(), args.end());
    if (sp.command.empty())
        return plain_error("no command: the image has none, give one after the image name");
    sp.environment = cfg.env;
    for (const auto& e : req.value("env", std::vector<std::string>{})) {
        if (e.find('=') == std::string::npos)
            return plain_error("-e " + e + ": expected KEY=VALUE");
        sp.environment.push_back(e);
    }
    sp.user = req.value("user", cfg.user.empty() ? std::string("0") : cfg.user);
    if (sp.user == "root") sp.user = "0";
    sp.working_dir = cfg.working_dir.empty() ? "/" : cfg.working_dir;
    std::vector<std::string> caps = runtime::caps::docker_default_names();
    for (auto c : req.value("cap_add", std::vector<std::string>{})) {
        std::transform(c.begin(), c.end(), c.begin(), ::toupper);
        if (!starts_with(c, "CAP_")) c = "CAP_" + c;
        if (runtime::oci::capability_from_name(c) < 0)
            return plain_error("--cap-add: unknown capability " + c);
        caps.push_back(c);
    }
    for (const auto& c : caps)
        sp.capabilities.push_back(runtime::oci::capability_from_name(c));
    std::string net = req.value("net", "host");
    if (net != "host" && net != "none") return plain_error("--net " + net + ": none or host");
    sp.host.net = net == "host";
    sp.read_only_root = req.value("read_only", false);
    for (const auto& v : req.value("volumes", std::vector<std::string>{})) {
        auto parts = split(v, ':');
        if (parts.size() < 2 || parts.size() > 3 || parts[0].empty() || parts[1].empty() ||
            parts[1][0] != '/')
            return plain_error("-v " + v + ": expected HOST:CONTAINER[:ro]");
        service::ServiceMount m;
        m.source = parts[0];
        m.destination = parts[1];
        m.read_only = parts.size() == 3 && parts[2] == "ro";
        if (parts.size() == 3 && parts[2] != "ro" && parts[2] != "rw")
            return plain_error("-v " + v + ": mode is ro or rw");
        sp.mounts.push_back(m);
    }
    if (req.contains("memory")) sp.resources.memory_max = req["memory"].get<int64_t>();
    if (req.contains("pids")) sp.resources.pids_max = req["pids"].get<int64_t>();
    if (req.contains("cpus")) {
        // Bounded as a service file's cpu is: the product below must fit.
        if (!(req["cpus"].get<double>() <= 1e6)) return plain_error("cpus: at most 1000000");
        sp.resources.cpu_period = 100000;
        sp.resources.cpu_quota = int64_t(req["cpus"].get<double>() * 100000);
    }
    sp.restart = service::RestartPolicy::no;
    sp.enabled = true;
    sp.workload = true;
    Fd stdin_fd;
    if (req.value("stdin", false)) {
        stdin_fd = take_client_fd();
        if (!stdin_fd) return plain_error("-i: no input was passed with the request");
    }

    // The container's root: the image's layers under a writable layer of its own.
    for (const char* d : {"", "/upper", "/work", "/rootfs"})
        if (::mkdir((dir + d).c_str(), 0755) < 0 && errno != EEXIST)
            return sys_error("mkdir " + dir + d);
    std::string lower;
    for (const auto& l : images_->lower_dirs(*found))
        lower += (lower.empty() ? "" : ":") + l;
    // userxattr: in a user namespace overlayfs keeps its whiteouts and opaque marks in
    // user.overlay.* xattrs (what the image store writes).
    std::string opts = fmt::format("lowerdir={},upperdir={}/upper,workdir={}/work{}", lower, dir,
                                   dir, runtime::in_child_user_namespace() ? ",userxattr" : "");
    if (::mount("overlay", (dir + "/rootfs").c_str(), "overlay", MS_NOSUID | MS_NODEV,
                opts.c_str()) < 0) {
        Error e = sys_error("mount overlay for " + name);
        (void)image::remove_tree(dir);
        return e;
    }

    Service s;
    s.name = name;
    s.workload = true;
    s.enabled = true;
    s.image = image; // as given, as docker ps shows it
    s.image_id = found->id;
    s.rootfs_dir = dir + "/rootfs";
    s.auto_remove = req.value("rm", false);
    s.stdin_fd = std::move(stdin_fd);
    s.tty = req.value("tty", false);
    s.created_unix = unix_now();
    s.spec = std::move(sp);
    s.log = std::make_unique<LogBuffer>(cfg_.state_dir + "/log/" + name + ".log");
    json meta = req;
    meta["name"] = name;
    meta["created"] = s.created_unix;
    (void)write_file_atomic(dir + "/workload.json", meta.dump() + "\n", 0600);
    Service& placed = services_[name] = std::move(s);
    start(placed);
    return name;
}

void Daemon::finished(const std::string& name) noexcept {
    try {
        Service* s = find(name);
        for (auto it = waiters_.begin(); it != waiters_.end();) {
            if (it->name != name) {
                ++it;
                continue;
            }
            protocol::send(it->fd,
                           s ? json{{"ok", true}, {"done", true}, {"service", describe(*s, false)}}
                             : error("workload " + name + " was removed"));
            it = waiters_.erase(it);
        }
    } catch (...) {
    }
}

void Daemon::expire_waiters(int64_t now) noexcept {
    try {
        for (auto it = waiters_.begin(); it != waiters_.end();) {
            if (now < it->deadline_ms) {
                ++it;
                continue;
            }
            protocol::send(it->fd, json{{"ok", true}, {"done", false}});
            it = waiters_.erase(it);
        }
    } catch (...) {
    }
}

Status Daemon::remove_workload(const std::string& name, bool force) {
    Service* s = find(name);
    if (!s || !s->workload) return plain_error("no workload '" + name + "'");
    if (s->has_container || s->pending) {
        if (!force)
            return plain_error("workload " + name + " is running: stop it first, or keel rm -f");
        if (s->has_container) {
            (void)s->container.signal(SIGKILL);
            auto st = s->container.wait();
            (void)st;
            unwatch(s->container.pidfd());
            if (s->log_rd && s->log_resume_ms < 0) unwatch(s->log_rd.get());
            (void)s->container.cleanup();
        }
        if (s->pending) {
            unwatch(s->pending->fd());
            ::kill(s->pending->pid(), SIGKILL);
            (void)s->pending->finish();
        }
    }
    std::string dir = cfg_.state_dir + "/containers/" + name;
    if (::umount2((dir + "/rootfs").c_str(), MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT)
        return sys_error("unmount " + dir + "/rootfs");
    Status r = image::remove_tree(dir);
    ::unlink((cfg_.state_dir + "/log/" + name + ".log").c_str());
    ::unlink((cfg_.state_dir + "/log/" + name + ".log.1").c_str());
    services_.erase(name);
    finished(name);
    return r;
}

json Daemon::start_exec(const json& req) {
    std::string name = req.value("name", "");
    Service* s = find(name);
    if (!s || !s->workload) return error("no workload '" + name + "'");
    if (!s->has_container) return error("workload " + name + " is not running");
    auto cmd = req.value("command", std::vector<std::string>{});
    if (cmd.empty()) return error("exec needs a command");
    auto facts = service::prepare_host(*s->spec, cfg_.ctx);
    if (!facts) return error(facts.error().str());
    auto spec = service::translate(*s->spec, cfg_.ctx, *facts);
    if (!spec) return error(spec.error().str());
    // Everything the workload's own process got, but in its namespaces and cgroup instead of
    // new ones: no rootfs, mounts or devices to set up.
    pid_t pid = s->container.pid();
    spec->id = name + "-exec";
    spec->args = cmd;
    for (const auto& e : req.value("env", std::vector<std::string>{}))
        spec->env.push_back(e);
    spec->namespaces.clear();
    for (auto t : {runtime::NsType::pid, runtime::NsType::mount, runtime::NsType::ipc,
                   runtime::NsType::uts, runtime::NsType::net, runtime::NsType::cgroup}) {
        // A namespace the workload shares with us (--net host) is not joined: setns would ask
        // for CAP_SYS_ADMIN over it, which the user runtime does not have over the host's.
        std::string theirs = fmt::format("/proc/{}/ns/{}", pid, runtime::ns_proc_name(t));
        struct stat a {
        }, b{};
        if (::stat(theirs.c_str(), &a) == 0 &&
            ::stat(fmt::format("/proc/self/ns/{}", runtime::ns_proc_name(t)).c_str(), &b) == 0 &&
            a.st_ino == b.st_ino && a.st_dev == b.st_dev)
            continue;
        spec->namespaces.push_back({t, theirs});
    }
    spec->rootfs.clear();
    spec->mounts.clear();
    spec->devices.clear();
    spec->masked_paths.clear();
    spec->readonly_paths.clear();
    spec->hostname.clear();
    spec->resources = {};
    spec->cgroup_path.clear();
    spec->cgroup_join = s->container.cgroup_path();
    int p[2];
    if (::pipe2(p, O_CLOEXEC) < 0) return error(sys_error("pipe").str());
    Fd rd(p[0]), wr(p[1]);
    spec->stdin_.kind = runtime::Stdio::Kind::null;
    spec->stdout_.kind = spec->stderr_.kind = runtime::Stdio::Kind::fd;
    spec->stdout_.fd = spec->stderr_.fd = wr.get();
    Fd in;
    if (req.value("stdin", false)) {
        // -i: the CLI's own stdin.
        in = take_client_fd();
        if (!in) return error("exec -i: no input was passed with the request");
        spec->stdin_.kind = runtime::Stdio::Kind::fd;
        spec->stdin_.fd = in.get();
    }
    // -it: a terminal made in the workload's own devpts as its stdio; the master goes to the
    // CLI with the reply, the output with it, and exec_output reports only the exit.
    spec->console = req.value("tty", false);
    runtime::StartOptions opts;
    opts.die_with_parent = false;
    runtime::StartError why;
    // Spawned, not waited for: the workload owns the namespaces the process joins and may
    // stop it (SIGSTOP) before it execs; keeld goes on serving everyone meanwhile, and
    // on_exec_event finishes the start (or expire_execs gives up on it).
    auto pending = runtime::Container::spawn(*spec, opts, &why);
    if (!pending) return error("exec in " + name + ": " + why.str());
    wr.reset();
    ::fcntl(rd.get(), F_SETFL, O_NONBLOCK);
    int id = next_exec_++;
    Exec& e = execs_[id];
    e.workload = name;
    e.pending = std::move(*pending);
    e.start_deadline_ms = now_ms() + kExecStartTimeoutMs;
    e.out = std::move(rd);
    watch(e.pending->fd(), (uint64_t(8) << 32) | uint32_t(e.pending->fd()));
    watch(e.out.get(), (uint64_t(8) << 32) | uint32_t(e.out.get()));
    bool tty = spec->console;
    if (tty) reply_fd_ = e.pending->take_console();
    return {{"ok", true}, {"exec", id}, {"tty", tty}};
}

namespace {

// What an exec's pipe holds: one read per wakeup (a flood does not keep keeld from its other
// descriptors), the last MiB kept.
void read_exec_output(int fd, std::string& output) {
    static char buf[64 * 1024];
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) output.append(buf, size_t(n));
    if (output.size() > (1 << 20)) output.erase(0, output.size() - (1 << 20));
}

} // namespace

void Daemon::on_exec_event(int fd) noexcept {
    try {
        for (auto& [id, e] : execs_) {
            if (e.done) continue;
            if (e.pending && e.pending->fd() == fd) {
                // Readable: finish() does not block.
                unwatch(fd);
                runtime::StartError why;
                auto c = e.pending->finish(&why);
                e.pending.reset();
                if (!c) {
                    e.start_error = "exec in " + e.workload + ": " + why.str();
                    if (e.out) unwatch(e.out.get());
                    e.out.reset();
                    e.done = true;
                    continue;
                }
                e.container = std::move(*c);
                watch(e.container.pidfd(), (uint64_t(8) << 32) | uint32_t(e.container.pidfd()));
                continue;
            }
            if (e.out && e.out.get() == fd) read_exec_output(fd, e.output);
            if (!e.pending && e.container.pidfd() == fd) {
                auto st = e.container.try_wait();
                if (!st) continue;
                if (e.out) {
                    // What is left in the pipe, within reason: a process of the workload may
                    // still hold its write end and keep writing.
                    for (int i = 0; i < 16; ++i)
                        read_exec_output(e.out.get(), e.output);
                    unwatch(e.out.get());
                    e.out.reset();
                }
                unwatch(e.container.pidfd());
                e.done = true;
                e.code = st->signal ? 128 + st->signal : st->code;
            }
        }
    } catch (...) {
    }
}

// An exec whose process has not exec'd in time (stopped by the workload, or stuck on its
// way in) is killed; the CLI gets the reason once it is reaped.
void Daemon::expire_execs(int64_t now) noexcept {
    try {
        for (auto& [id, e] : execs_) {
            if (!e.pending || e.start_deadline_ms < 0 || now < e.start_deadline_ms) continue;
            e.start_deadline_ms = -1;
            ::kill(e.pending->pid(), SIGKILL);
            e.start_error = fmt::format(
                "exec in {}: the process did not start within {} s (stopped or stuck in the "
                "workload's namespaces); killed",
                e.workload, kExecStartTimeoutMs / 1000);
        }
    } catch (...) {
    }
}

json Daemon::handle_workload(const std::string& cmd, const json& req) {
    if (cfg_.instance != "user")
        return error("workloads run in the user runtime (keel run talks to it)");
    std::string name = req.value("name", "");
    if (cmd == "exec") return start_exec(req);
    if (cmd == "wait") {
        Service* s = find(name);
        if (!s || !s->workload) return error("no workload '" + name + "'");
        if (s->state == State::exited || s->state == State::failed)
            return {{"ok", true}, {"done", true}, {"service", describe(*s, false)}};
        int64_t ms = std::clamp<int64_t>(req.value("timeout_ms", int64_t(1000)), 0, 60000);
        waiters_.push_back({current_client_, name, now_ms() + ms});
        return json(nullptr);
    }
    if (cmd == "exec_output") {
        // The output from `offset` on; once done and read to the end, the exec is forgotten.
        auto it = execs_.find(req.value("exec", 0));
        if (it == execs_.end()) return error("no such exec");
        Exec& e = it->second;
        if (!e.start_error.empty()) {
            // Failed or given up: said once the process is gone.
            if (!e.done)
                return {{"ok", true},
                        {"output", ""},
                        {"offset", req.value("offset", size_t(0))},
                        {"done", false}};
            json r = error(e.start_error);
            execs_.erase(it);
            return r;
        }
        size_t off = std::min<size_t>(req.value("offset", size_t(0)), e.output.size());
        json r = {{"ok", true},
                  {"output", e.output.substr(off)},
                  {"offset", e.output.size()},
                  {"done", e.done}};
        if (e.done) {
            r["exit_code"] = e.code;
            execs_.erase(it);
        }
        return r;
    }
    if (cmd == "run") {
        auto n = create_workload(req);
        if (!n) return error(n.error().str());
        Service* s = find(*n);
        reply_fd_ = std::move(s->tty_master);
        return {
            {"ok", true}, {"name", *n}, {"tty", bool(reply_fd_)}, {"service", describe(*s, false)}};
    }
    if (cmd == "kill") {
        Service* s = find(name);
        if (!s || !s->workload) return error("no workload '" + name + "'");
        if (!s->has_container) return error("workload " + name + " is not running");
        int sig = req.value("signal", SIGKILL);
        if (auto st = s->container.signal(sig); !st) return error(st.error().str());
        s->stop_requested = true;
        return {{"ok", true}};
    }
    if (cmd == "rm") {
        if (auto st = remove_workload(name, req.value("force", false)); !st)
            return error(st.error().str());
        return {{"ok", true}};
    }
    return error("unknown command '" + cmd + "'");
}

namespace {

json image_json(const image::Image& img) {
    return {{"id", img.id},
            {"names", img.names},
            {"layers", img.layers.size()},
            {"size", img.size_bytes},
            {"created", img.created_unix},
            {"entrypoint", img.config.entrypoint},
            {"cmd", img.config.cmd}};
}

} // namespace

Fd Daemon::take_client_fd() {
    auto c = clients_.find(current_client_);
    if (c == clients_.end() || c->second.fds.empty()) return Fd();
    Fd f = std::move(c->second.fds.front());
    c->second.fds.erase(c->second.fds.begin());
    return f;
}

void Daemon::on_import_event() noexcept {
    if (!import_) return;
    try {
        char buf[8192];
        ssize_t n;
        while ((n = ::read(import_->out.get(), buf, sizeof buf)) > 0)
            import_->reply.append(buf, size_t(n));
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
        unwatch(import_->out.get());
        int status = 0;
        pid_t r;
        do
            r = ::waitpid(import_->pid, &status, 0);
        while (r < 0 && errno == EINTR);
        json reply = json::parse(import_->reply, nullptr, false);
        if (reply.is_discarded() || !reply.is_object()) {
            std::string how = r != import_->pid ? "ended"
                              : WIFSIGNALED(status)
                                  ? fmt::format("was killed by signal {}", WTERMSIG(status))
                                  : fmt::format("exited with {}", WEXITSTATUS(status));
            reply = error(fmt::format(
                "image import: the import process {} without an answer; nothing was added", how));
        }
        if (import_->client >= 0 && clients_.count(import_->client))
            protocol::send(import_->client, reply);
    } catch (...) {
    }
    import_.reset();
}

json Daemon::handle_image(const std::string& cmd, const json& req) {
    if (cfg_.instance != "user" || !images_)
        return error("images belong to the user runtime (keel image talks to it)");
    if (cmd == "image_list") {
        auto all = images_->list();
        if (!all) return error(all.error().str());
        json out = json::array();
        for (const auto& img : *all)
            out.push_back(image_json(img));
        return {{"ok", true}, {"images", out}};
    }
    if (cmd == "image_import") {
        // The archive comes as a descriptor with the request: the CLI's file system is not ours.
        Fd archive = take_client_fd();
        if (!archive) return error("image import: no file was passed with the request");
        struct stat st {};
        if (::fstat(archive.get(), &st) < 0 || !S_ISREG(st.st_mode))
            return error("image import: not a regular file");
        if (import_)
            return error("image import: another import is running (one at a time; try again when "
                         "it is done)");
        if (shutting_down_) return error("image import: keeld is stopping");
        int p[2];
        if (::pipe2(p, O_CLOEXEC) < 0) return error(sys_error("image import: pipe").str());
        Fd rd(p[0]), wr(p[1]);
        std::string file = req.value("file", std::string("archive"));
        pid_t parent = ::getpid();
        pid_t pid = ::fork();
        if (pid < 0) return error(sys_error("image import: fork").str());
        if (pid == 0) {
            // The child: the store keeps no state in memory, so what it writes is what keeld
            // reads next. It dies with keeld; an interrupted import leaves only tmp/ behind.
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (::getppid() != parent) ::_exit(1); // keeld was gone before the line above
            // Only the archive and the reply pipe: not keeld's sockets, other clients' passed
            // descriptors or the container pidfds, which would outlive their closing in keeld.
            int keep[2] = {std::min(archive.get(), wr.get()), std::max(archive.get(), wr.get())};
            if (keep[0] > 3) ::syscall(SYS_close_range, 3U, unsigned(keep[0] - 1), 0);
            if (keep[1] > keep[0] + 1)
                ::syscall(SYS_close_range, unsigned(keep[0] + 1), unsigned(keep[1] - 1), 0);
            ::syscall(SYS_close_range, unsigned(keep[1] + 1), ~0U, 0);
            std::string text;
            try {
                auto imported = images_->import(file, archive.get());
                json reply;
                if (!imported) {
                    reply = error(imported.error().str());
                } else {
                    json out = json::array();
                    for (const auto& img : *imported)
                        out.push_back(image_json(img));
                    reply = {{"ok", true}, {"images", out}};
                }
                text = reply.dump();
            } catch (const std::exception& e) {
                text = error(std::string("image import: ") + e.what()).dump();
            }
            for (size_t done = 0; done < text.size();) {
                ssize_t n = ::write(wr.get(), text.data() + done, text.size() - done);
                if (n < 0 && errno == EINTR) continue;
                if (n <= 0) break;
                done += size_t(n);
            }
            ::_exit(0);
        }
        wr.reset();
        ::fcntl(rd.get(), F_SETFL, O_NONBLOCK);
        watch(rd.get(), (uint64_t(9) << 32) | uint32_t(rd.get())); // kImport
        import_ = Import{pid, std::move(rd), current_client_, {}};
        return json(nullptr); // answered by on_import_event
    }
    if (cmd == "image_rm") {
        std::string ref = req.value("name", "");
        // An import in flight has layers in place that no image names yet.
        if (import_) return error("image rm: an import is running; try again when it is done");
        auto img = images_->find(ref);
        if (!img) return error(img.error().str());
        // A workload's root is an overlay on the image's layers: they stay while it exists.
        for (const auto& [n, s] : services_)
            if (s.workload && s.image_id == img->id)
                return error(
                    fmt::format("image {} is used by workload {} (keel rm {} first)", ref, n, n));
        if (auto st = images_->remove(ref); !st) return error(st.error().str());
        return {{"ok", true}, {"removed", image_json(*img)}};
    }
    return error("unknown command '" + cmd + "'");
}

} // namespace keel::keeld
