#include "keeld/daemon.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include "common/clock.h"
#include "common/contract.h"
#include "common/log.h"
#include "common/signals.h"
#include "config/config.h"
#include "config/kernel_args.h"
#include "keeld/protocol.h"
#include "keeld/restart.h"

namespace keel::keeld {

namespace {

enum Kind : uint64_t {
    kSignal = 1,
    kListen = 2,
    kClient = 3,
    kPidfd = 4,
    kLog = 5,
    kNotify = 6,
    kSpawn = 7,
    kExec = 8,
    kImport = 9
};
uint64_t tag(Kind k, int fd) {
    return (uint64_t(k) << 32) | uint32_t(fd);
}

// A service that is not ready this long after its start counts as a failed start: a boot
// must not wait forever on a path that never appears.
constexpr int64_t kReadyTimeoutMs = 30000;
// How often a `ready: {path: P}` service is looked at while it starts.
constexpr int64_t kReadyPollMs = 20;
// How often a boot that has not finished says what it waits for.
constexpr int64_t kProgressEveryMs = 5000;
// How long reading a service's output pauses once it comes faster than its log keeps.
constexpr int64_t kLogPauseMs = 100;

} // namespace

const char* state_name(State s) {
    switch (s) {
    case State::disabled:
        return "disabled";
    case State::stopped:
        return "stopped";
    case State::waiting:
        return "waiting";
    case State::starting:
        return "starting";
    case State::running:
        return "running";
    case State::stopping:
        return "stopping";
    case State::backoff:
        return "restarting";
    case State::failed:
        return "failed";
    case State::invalid:
        return "invalid";
    case State::exited:
        return "exited";
    }
    return "?";
}

Daemon::Daemon(DaemonConfig cfg) : cfg_(std::move(cfg)) {
    if (cfg_.socket.empty()) cfg_.socket = protocol::socket_path(cfg_.instance);
}

void Daemon::watch(int fd, uint64_t t) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = t;
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev);
}

void Daemon::unwatch(int fd) {
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
}

Service* Daemon::find(const std::string& name) {
    auto it = services_.find(name);
    return it == services_.end() ? nullptr : &it->second;
}

std::string Daemon_overlay(const DaemonConfig& c) {
    return c.state_dir + "/config.yml";
}
std::string Daemon_last_good(const DaemonConfig& c) {
    return c.state_dir + "/config.last-good.yml";
}

// The effective configuration, as PID 1 computed it at boot (the same library, the same
// fallback to the last good overlay); again after every `keel config set`.
void Daemon::reload_config() {
    auto overrides = config::parse_kernel_args(cfg_.cmdline).config;
    auto loaded = config::load(Daemon_overlay(cfg_), Daemon_last_good(cfg_), overrides);
    config_ = loaded.effective;
    config_error_ = loaded.error;
    if (!loaded.error.empty()) log::error("{} (using the {})", loaded.error, loaded.source);
    auto priv = config::get(config_, "allow_privileged");
    cfg_.ctx.allow_privileged = priv && priv->as<bool>();
}

void Daemon::load() {
    auto catalog = service::load_catalog(cfg_.services_dirs);
    reload_config();
    order_ = service::start_order(catalog); // before the specs are moved out of the catalog
    ::mkdir((cfg_.state_dir + "/log").c_str(), 0750);
    for (auto& spec : catalog.services) {
        Service s;
        s.name = spec.name;
        auto on = config::get(config_, "services." + spec.name + ".enabled");
        s.enabled = on ? on->as<bool>() : spec.enabled;
        s.state = s.enabled ? State::stopped : State::disabled;
        // A missing image is a broken file, said at load rather than at every start.
        std::string root =
            spec.image.starts_with("/") ? spec.image : cfg_.ctx.images_dir + "/" + spec.image;
        struct stat st {};
        if (::stat(root.c_str(), &st) < 0 || !S_ISDIR(st.st_mode)) {
            s.state = State::invalid;
            s.error = fmt::format("{}: image: '{}' not found at {}", spec.file, spec.image, root);
            log::error("service {}: {}", s.name, s.error);
            s.spec.reset();
            services_[s.name] = std::move(s);
            continue;
        }
        s.spec = std::move(spec);
        services_[s.name] = std::move(s);
    }
    for (auto& [name, why] : catalog.errors) {
        Service& s = services_[name];
        s.name = name;
        s.spec.reset();
        s.state = State::invalid;
        s.error = why;
        log::error("service {}: {}", name, why);
    }
    for (auto& [name, s] : services_)
        s.log = std::make_unique<LogBuffer>(cfg_.state_dir + "/log/" + name + ".log");
}

bool Daemon::deps_running(const Service& s, std::string& waiting_for) const {
    auto check = [&](const std::string& dep, bool required) {
        auto it = services_.find(dep);
        if (it == services_.end()) return !required;
        const Service& d = it->second;
        // `after` only orders against services that will run; `requires` needs it running.
        if (!required && (!d.enabled || d.state == State::failed || d.state == State::invalid))
            return true;
        if (d.state == State::running) return true;
        waiting_for = dep;
        return false;
    };
    for (const auto& d : s.spec->required)
        if (!check(d, true)) return false;
    for (const auto& d : s.spec->after)
        if (!check(d, false)) return false;
    return true;
}

void Daemon::schedule() noexcept {
    if (shutting_down_) return;
    int64_t now = now_ms();
    for (const auto& name : order_) {
        Service* s = find(name);
        if (!s || !s->enabled || !s->spec || s->hold) continue;
        if (s->state == State::backoff && now >= s->next_start_ms) s->state = State::stopped;
        if (s->state != State::stopped && s->state != State::waiting) continue;
        std::string dep;
        if (!deps_running(*s, dep)) {
            s->state = State::waiting;
            s->error = "waiting for " + dep;
            continue;
        }
        start(*s);
    }
    maybe_ready();
}

void Daemon::start(Service& s) noexcept {
    try {
        s.error.clear();
        s.stop_requested = false;
        service::ServiceSpec resolved = *s.spec;
        auto env = environment(*s.spec);
        if (env) resolved.environment = std::move(*env);
        if (resolved.user_namespace.enabled && !resolved.user_namespace.host_id) {
            // `user_namespace: true`: the range from the configuration.
            resolved.user_namespace.host_id = uint32_t(
                std::stoul(config::to_text(*config::get(config_, "user_runtime.host_id"))));
            resolved.user_namespace.size =
                uint32_t(std::stoul(config::to_text(*config::get(config_, "user_runtime.size"))));
        }
        auto facts = env ? service::prepare_host(resolved, cfg_.ctx)
                         : Result<service::HostFacts>(env.error());
        auto spec = facts ? service::translate(resolved, cfg_.ctx, *facts)
                          : Result<runtime::ContainerSpec>(facts.error());
        if (!spec) {
            s.state = State::failed;
            s.error = spec.error().str();
            s.log->note("not started: " + s.error);
            log::error("service {}: {}", s.name, s.error);
            return;
        }
        if (s.spec->privileged)
            log::warn("service {} runs PRIVILEGED (allow_privileged is set)", s.name);
        int p[2];
        if (::pipe2(p, O_CLOEXEC) < 0) throw std::runtime_error("pipe");
        Fd rd(p[0]), wr(p[1]);
        spec->stdin_.kind = runtime::Stdio::Kind::null;
        spec->stdout_.kind = spec->stderr_.kind = runtime::Stdio::Kind::fd;
        spec->stdout_.fd = spec->stderr_.fd = wr.get();
        // `keel run -it`: a terminal made in the container is its stdio and controlling
        // terminal; the CLI holds the master, so what it prints goes there and not to the log.
        spec->console = std::exchange(s.tty, false);
        // `keel run -i`: it reads the CLI's own stdin (a pipe, a file), passed with the request.
        Fd in = std::move(s.stdin_fd);
        if (in) {
            spec->stdin_.kind = runtime::Stdio::Kind::fd;
            spec->stdin_.fd = in.get();
        }
        // ready: notify — the service writes "READY" to fd 3 (KEEL_NOTIFY_FD) when it is.
        Fd notify_rd, notify_wr;
        if (s.spec->ready == service::ReadyKind::notify) {
            int n[2];
            if (::pipe2(n, O_CLOEXEC) < 0) throw std::runtime_error("pipe");
            notify_rd.reset(n[0]);
            notify_wr.reset(n[1]);
            spec->extra_fds.push_back(notify_wr.get());
            // The first of the extra fds, which the runtime hands over from fd 3 = kNotifyFd.
            spec->env.push_back(fmt::format("{}={}", contract::kNotifyFdEnv, contract::kNotifyFd));
        }
        runtime::StartOptions opts;
        opts.die_with_parent = false; // a keeld crash is survived: PID 1 cleans up by cgroup
        runtime::StartError why;
        // Spawned, not waited for: the container sets itself up while keeld starts the next
        // one (on_spawned finishes the start).
        auto spawned = runtime::Container::spawn(*spec, opts, &why);
        if (!spawned) {
            start_failed(s, why.str());
            return;
        }
        ::fcntl(rd.get(), F_SETFL, O_NONBLOCK);
        s.log_rd = std::move(rd);
        if (notify_rd) {
            ::fcntl(notify_rd.get(), F_SETFL, O_NONBLOCK);
            s.notify_rd = std::move(notify_rd);
        }
        s.pending = std::move(*spawned);
        if (spec->console) s.tty_master = s.pending->take_console();
        s.state = State::starting;
        s.started_ms = now_ms();
        // The container's own set-up (mounts, namespaces, the exec) is bounded too: a child
        // stuck on the way (a hung mount source, a lost wake-up) must not hold the boot.
        s.ready_deadline_ms = s.started_ms + kReadyTimeoutMs;
        watch(s.pending->fd(), tag(kSpawn, s.pending->fd()));
    } catch (const std::exception& e) {
        s.state = State::failed;
        s.error = e.what();
    }
}

void Daemon::start_failed(Service& s, const std::string& why) noexcept {
    s.last_exit = why;
    s.log->note("start failed: " + s.last_exit);
    log::error("service {}: start failed: {}", s.name, s.last_exit);
    s.failures++;
    s.state = State::backoff;
    s.next_start_ms = now_ms() + backoff_ms(s.failures);
    if (s.failures > s.spec->restart_limit) {
        s.state = State::failed;
        s.error = "start failed " + std::to_string(s.failures) + " times: " + s.last_exit;
    }
    if (s.workload) {
        // `keel run` says why at once; a workload is not retried.
        s.state = State::failed;
        s.hold = true;
        s.error = "start failed: " + s.last_exit;
        if (s.auto_remove) to_remove_.push_back(s.name);
        finished(s.name);
    }
    if (s.stop_requested || shutting_down_) {
        s.state = s.enabled ? State::stopped : State::disabled;
        s.stop_requested = false;
    }
}

// The spawned container has exec'd its command, or failed on the way.
void Daemon::on_spawned(Service& s) noexcept {
    try {
        unwatch(s.pending->fd());
        runtime::StartError why;
        auto c = s.pending->finish(&why);
        s.pending.reset();
        log::debug("service {}: container start took {} ms", s.name, now_ms() - s.started_ms);
        if (!c) {
            s.log_rd.reset();
            s.notify_rd.reset();
            start_failed(s, why.str());
            return;
        }
        s.container = std::move(*c);
        s.has_container = true;
        watch(s.container.pidfd(), tag(kPidfd, s.container.pidfd()));
        watch(s.log_rd.get(), tag(kLog, s.log_rd.get()));
        s.log->note(fmt::format("started, pid {}", s.container.pid()));
        if (s.spec->user_namespace.enabled) {
            // Not keeld's -900 (service::to_container): its processes, and the workloads a
            // user runtime starts, are what the OOM killer should take.
            std::string adj = fmt::format("/proc/{}/oom_score_adj", s.container.pid());
            if (!write_file(adj.c_str(), "0"))
                log::warn("service {}: {}", s.name, sys_error("write 0 to " + adj).str());
        }
        if (s.stop_requested || shutting_down_) {
            // Stopped while it was being set up: stop it now that it can be.
            bool keep = s.start_after_stop;
            s.state = State::running;
            stop(s, s.spec->stop_timeout_s);
            s.start_after_stop = keep;
            return;
        }
        if (s.spec->ready == service::ReadyKind::started) {
            became_ready(s);
            return;
        }
        s.ready_deadline_ms = now_ms() + kReadyTimeoutMs;
        if (s.notify_rd) watch(s.notify_rd.get(), tag(kNotify, s.notify_rd.get()));
        check_ready(s);
    } catch (const std::exception& e) {
        s.pending.reset();
        s.state = State::failed;
        s.error = e.what();
    }
}

void Daemon::became_ready(Service& s) noexcept {
    s.state = State::running;
    s.ready_deadline_ms = -1;
    if (s.notify_rd) {
        unwatch(s.notify_rd.get());
        s.notify_rd.reset();
    }
    if (s.spec->ready == service::ReadyKind::started)
        log::info("service {} started (pid {})", s.name, s.container.pid());
    else
        log::info("service {} ready in {} ms (pid {})", s.name, now_ms() - s.started_ms,
                  s.container.pid());
}

// A container whose set-up did not reach its exec in time: killed, which ends its start as
// an exit the restart policy handles; the log says why.
void Daemon::setup_timed_out(Service& s) noexcept {
    s.ready_deadline_ms = -1;
    ::kill(s.pending->pid(), SIGKILL);
    try {
        s.log->note(
            fmt::format("container set-up did not finish in {} s: killed", kReadyTimeoutMs / 1000));
        log::error("service {}: container set-up did not finish in {} s", s.name,
                   kReadyTimeoutMs / 1000);
    } catch (...) {
    }
}

// Until every enabled service has settled, the console says every few seconds which ones
// the boot still waits for and since when: a boot that hangs says where.
void Daemon::report_boot_progress(int64_t now) noexcept {
    if (ready_sent_ || cfg_.notify_fd < 0 || now < next_progress_ms_) return;
    bool first = next_progress_ms_ == 0;
    next_progress_ms_ = now + kProgressEveryMs;
    if (first) return;
    try {
        std::vector<std::string> waiting;
        for (const auto& [name, s] : services_) {
            if (!s.enabled || s.hold) continue;
            if (s.state == State::starting)
                waiting.push_back(fmt::format("{} ({} for {} s)", name,
                                              s.pending ? "setting up" : "not ready",
                                              (now - s.started_ms) / 1000));
            else if (s.state == State::waiting || s.state == State::stopped ||
                     s.state == State::backoff)
                waiting.push_back(
                    fmt::format("{} ({})", name, s.error.empty() ? state_name(s.state) : s.error));
        }
        log::info("boot: after {} s still waiting for {}", (now - boot_ms_) / 1000,
                  fmt::join(waiting, ", "));
    } catch (...) {
    }
}

// A starting service: ready when its path exists (seen from keeld, so on the host: the
// service makes it appear through a bind mount) or it has written READY to its notify fd.
void Daemon::check_ready(Service& s) noexcept {
    if (s.state != State::starting || !s.has_container) return;
    bool ready = false;
    if (s.spec->ready == service::ReadyKind::path) {
        struct stat st {};
        ready = ::lstat(s.spec->ready_path.c_str(), &st) == 0;
    } else if (s.notify_rd) {
        char buf[256];
        ssize_t n = ::read(s.notify_rd.get(), buf, sizeof buf);
        if (n > 0) {
            std::string got(buf, size_t(n));
            ready = got.find(contract::kReady) != std::string::npos;
        } else if (n == 0) {
            // Closed without a word: it cannot tell us any more; a wrong service file.
            unwatch(s.notify_rd.get());
            s.notify_rd.reset();
            s.log->note("closed its notify fd without writing READY");
        }
    }
    if (ready) {
        became_ready(s);
        return;
    }
    if (now_ms() >= s.ready_deadline_ms) {
        s.log->note(fmt::format("not ready after {} s: killed", kReadyTimeoutMs / 1000));
        log::error("service {}: not ready after {} s", s.name, kReadyTimeoutMs / 1000);
        s.ready_deadline_ms = -1;
        (void)s.container.signal(SIGKILL);
    }
}

// Whether the process has a handler for `sig` (SigCgt in /proc/PID/status).
static bool catches(pid_t pid, int sig) {
    std::string status;
    if (!read_file(fmt::format("/proc/{}/status", pid).c_str(), status)) return true;
    auto at = status.find("SigCgt:\t");
    if (at == std::string::npos) return true;
    uint64_t mask = std::strtoull(status.c_str() + at + 8, nullptr, 16);
    return (mask >> (sig - 1)) & 1;
}

void Daemon::stop(Service& s, int timeout_s) noexcept {
    if (s.pending) {
        s.stop_requested = true; // done by on_spawned, once the container can be signalled
        return;
    }
    if (!s.has_container || (s.state != State::running && s.state != State::starting)) {
        if (s.state == State::backoff || s.state == State::waiting)
            s.state = s.enabled ? State::stopped : State::disabled;
        return;
    }
    s.stop_requested = true;
    s.state = State::stopping;
    s.ready_deadline_ms = -1;
    if (s.notify_rd) {
        unwatch(s.notify_rd.get());
        s.notify_rd.reset();
    }
    int sig = s.spec ? s.spec->stop_signal : SIGTERM;
    // The kernel drops a signal sent to a PID namespace's init that has no handler for it: a
    // `sleep` as the service's PID 1 would ignore SIGTERM and wait out the whole timeout.
    // Then SIGKILL is what the stop would come to anyway, so it is sent now.
    if (s.spec && !s.spec->host.pid && !catches(s.container.pid(), sig)) {
        s.log->note(fmt::format("PID 1 has no handler for SIG{}: SIGKILL", signal_name(sig)));
        sig = SIGKILL;
    }
    (void)s.container.signal(sig);
    s.kill_at_ms = now_ms() + int64_t(timeout_s) * 1000;
}

// One read per wakeup, then back to epoll: a service flooding its pipe gets its turn like
// every other descriptor, and the control socket is still answered. What comes faster than
// the log's rate is dropped (and counted in the log); reading then pauses briefly, so the
// writer waits on its full pipe rather than keeld spinning on it.
void Daemon::read_log(Service& s) noexcept {
    static char buf[64 * 1024];
    if (!s.log_rd) return;
    ssize_t n = ::read(s.log_rd.get(), buf, sizeof buf);
    if (n > 0 && !s.log->append(buf, size_t(n), now_ms()) && s.log_resume_ms < 0) {
        unwatch(s.log_rd.get());
        s.log_resume_ms = now_ms() + kLogPauseMs;
    }
    // End of file: no writer is left (the service closed its stdout and stderr, or a workload
    // with a terminal never had them). epoll would report it again at once, for ever.
    if (n == 0) {
        if (s.log_resume_ms < 0) unwatch(s.log_rd.get());
        s.log_resume_ms = -1;
        s.log_rd.reset();
    }
}

void Daemon::on_exit(Service& s) noexcept {
    auto st = s.container.try_wait();
    if (!st) return;
    // What is left in the pipe, within reason: with host: pid, other processes may still
    // hold its write end.
    for (int i = 0; i < 16 && s.log_rd; ++i)
        read_log(s);
    s.log->flush_dropped();
    // Before the cgroup goes: was it the OOM killer?
    std::string events;
    if (!s.container.cgroup_path().empty() &&
        read_file((s.container.cgroup_path() + "/memory.events").c_str(), events)) {
        auto at = events.find("oom_kill ");
        s.oom_killed =
            at != std::string::npos && std::strtoll(events.c_str() + at + 9, nullptr, 10) > 0;
    }
    unwatch(s.container.pidfd());
    if (s.log_rd && s.log_resume_ms < 0) unwatch(s.log_rd.get());
    s.log_rd.reset();
    s.log_resume_ms = -1;
    if (s.notify_rd) unwatch(s.notify_rd.get());
    s.notify_rd.reset();
    s.ready_deadline_ms = -1;
    (void)s.container.cleanup();
    s.container = runtime::Container();
    s.has_container = false;
    s.kill_at_ms = -1;
    s.last_exit = st->describe();
    if (s.oom_killed) s.last_exit += " (out of memory: killed by the OOM killer)";
    s.exit_code = st->signal ? 128 + st->signal : st->code;
    s.log->note(s.last_exit);
    int64_t ran = now_ms() - s.started_ms;
    if (s.workload) {
        // A workload runs once (no restart policy in this version): it stays, exited, for
        // `keel ps -a` and `keel logs`, unless it was started with --rm.
        s.state = State::exited;
        s.hold = true;
        s.stop_requested = false;
        if (s.auto_remove) to_remove_.push_back(s.name);
        finished(s.name);
        return;
    }
    if (s.stop_requested || shutting_down_) {
        s.state = s.enabled ? State::stopped : State::disabled;
        s.hold = s.stop_requested && s.enabled && !s.start_after_stop;
        s.stop_requested = false;
        s.start_after_stop = false;
        return;
    }
    log::warn("service {} {}", s.name, s.last_exit);
    bool failed = st->signal || st->code != 0;
    auto d = after_exit(s.spec->restart, failed, ran, s.spec->restart_limit, s.failures);
    switch (d.kind) {
    case RestartDecision::Kind::hold_stopped:
    case RestartDecision::Kind::hold_failed:
        // Done by its own policy: it stays down until someone starts it.
        s.hold = true;
        s.state = failed ? State::failed : State::stopped;
        s.error = failed ? s.last_exit : "finished: " + s.last_exit;
        return;
    case RestartDecision::Kind::give_up:
        s.state = State::failed;
        s.error = fmt::format("{} ({} failures in a row)", s.last_exit, s.failures);
        log::error("service {} failed: {}", s.name, s.error);
        return;
    case RestartDecision::Kind::restart:
        s.restarts++;
        s.state = State::backoff;
        s.next_start_ms = now_ms() + d.delay_ms;
        s.log->note(fmt::format("restarting in {} ms", d.delay_ms));
        return;
    }
}

void Daemon::maybe_ready() noexcept {
    if (ready_sent_ || cfg_.notify_fd < 0) return;
    for (const auto& [name, s] : services_) {
        if (!s.enabled || s.hold) continue;
        if (s.state == State::stopped || s.state == State::starting ||
            (s.state == State::backoff && s.failures == 0))
            return;
        if (s.state == State::waiting) {
            // Waiting on a dependency that has failed will not end by itself: not a reason
            // to hold the boot.
            auto dep = services_.find(s.error.substr(std::string("waiting for ").size()));
            if (dep == services_.end() ||
                (dep->second.state != State::failed && dep->second.state != State::invalid))
                return;
        }
    }
    ready_sent_ = true;
    log::info("all enabled services started in {} ms", now_ms() - boot_ms_);
    const auto& line = contract::kReadyLine;
    ssize_t ignored = ::write(cfg_.notify_fd, line.data(), line.size());
    (void)ignored;
    // From here on the console belongs to its user: routine events go to the services' logs.
    log::set_quiet(true);
}

Status Daemon::persist_enabled(const std::string& name, bool enabled) {
    return change_overlay("services." + name + ".enabled", YAML::Node(enabled));
}

// Read, change, validate, then write atomically (temp file, fsync, rename, fsync of the
// directory): a crash leaves the old file or the new one. A broken overlay is not rewritten:
// it is the user's, with the error that says where to fix it.
Status Daemon::change_overlay(const std::string& key, const YAML::Node& value) {
    std::string path = Daemon_overlay(cfg_), text;
    YAML::Node doc(YAML::NodeType::Map);
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0) {
        if (!read_file(path.c_str(), text)) return sys_error("read " + path);
        auto parsed = config::parse(text, path);
        if (!parsed) return plain_error(parsed.error().str() + " (fix or remove it first)");
        doc = *parsed;
    }
    config::set(doc, key, value);
    if (auto v = config::validate(doc, path); !v) return v;
    std::string out = config::to_yaml(doc);
    if (!write_file_atomic(path, out, 0600)) return sys_error("write " + path);
    // It validated: it is also the last good configuration from now on.
    (void)write_file_atomic(Daemon_last_good(cfg_), out, 0600);
    reload_config();
    return {};
}

// The service's environment with ${config.key} references replaced by the configured values
// (lists joined with spaces): services/network/service.yml takes its address from the
// configuration.
Result<std::vector<std::string>> Daemon::environment(const service::ServiceSpec& spec) const {
    std::vector<std::string> out;
    for (std::string e : spec.environment) {
        for (size_t at; (at = e.find("${")) != std::string::npos;) {
            size_t end = e.find('}', at);
            if (end == std::string::npos)
                return plain_error(spec.file + ": environment: unclosed ${ in '" + e + "'");
            std::string key = e.substr(at + 2, end - at - 2);
            if (!config::find_key(key))
                return plain_error(spec.file + ": environment: unknown configuration key '" + key +
                                   "'");
            auto v = config::get(config_, key);
            e.replace(at, end - at + 1, v ? config::to_text(*v) : "");
        }
        out.push_back(std::move(e));
    }
    return out;
}

int Daemon::run() noexcept {
    try {
        boot_ms_ = now_ms();
        epoll_.reset(::epoll_create1(EPOLL_CLOEXEC));
        sigset_t sigs;
        sigemptyset(&sigs);
        for (int s : {SIGCHLD, contract::kKeeldStop, contract::kKeeldInterrupt, SIGHUP, SIGPIPE})
            sigaddset(&sigs, s);
        ::sigprocmask(SIG_BLOCK, &sigs, nullptr);
        sigfd_.reset(::signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK));
        watch(sigfd_.get(), tag(kSignal, sigfd_.get()));

        ::mkdir("/run/keel", 0755);
        ::unlink(cfg_.socket.c_str());
        listen_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        std::strncpy(addr.sun_path, cfg_.socket.c_str(), sizeof addr.sun_path - 1);
        if (::bind(listen_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0 ||
            ::listen(listen_.get(), 16) < 0) {
            log::error("control socket {}: {}", cfg_.socket, std::strerror(errno));
        } else {
            admin_gid_ = admin_gid();
            if (admin_gid_ != gid_t(-1) && ::chown(cfg_.socket.c_str(), 0, admin_gid_) < 0)
                log::warn("chown {}: {}", cfg_.socket, std::strerror(errno));
            ::chmod(cfg_.socket.c_str(), cfg_.instance == "user" ? 0666 : 0660);
            // The user runtime's socket, as the console and the host see it.
            if (cfg_.instance == "system" && cfg_.socket == protocol::socket_path("system")) {
                ::unlink("/run/keel/user.sock");
                if (::symlink("user/user.sock", "/run/keel/user.sock") < 0)
                    log::warn("symlink /run/keel/user.sock: {}", std::strerror(errno));
            }
            watch(listen_.get(), tag(kListen, listen_.get()));
        }
        if (cfg_.instance == "user") setup_user_instance();
        load();
        log::debug("loaded {} services in {} ms", services_.size(), now_ms() - boot_ms_);
        schedule();
    } catch (const std::exception& e) {
        log::error("startup: {}", e.what());
    }

    for (;;) {
        try {
            int64_t now = now_ms(), timeout = -1;
            if (!ready_sent_ && cfg_.notify_fd >= 0 && next_progress_ms_ > 0)
                timeout = std::max<int64_t>(0, next_progress_ms_ - now);
            for (const auto& w : waiters_)
                timeout =
                    timeout < 0 ? w.deadline_ms - now : std::min(timeout, w.deadline_ms - now);
            for (auto& [name, s] : services_) {
                if (s.state == State::backoff && s.next_start_ms >= 0)
                    timeout = timeout < 0 ? s.next_start_ms - now
                                          : std::min(timeout, s.next_start_ms - now);
                if (s.kill_at_ms >= 0)
                    timeout =
                        timeout < 0 ? s.kill_at_ms - now : std::min(timeout, s.kill_at_ms - now);
                if (s.state == State::starting)
                    timeout = timeout < 0 ? kReadyPollMs : std::min(timeout, kReadyPollMs);
                if (s.log_resume_ms >= 0)
                    timeout = timeout < 0 ? s.log_resume_ms - now
                                          : std::min(timeout, s.log_resume_ms - now);
            }
            for (const auto& [id, e] : execs_)
                if (e.start_deadline_ms >= 0 && e.pending)
                    timeout = timeout < 0 ? e.start_deadline_ms - now
                                          : std::min(timeout, e.start_deadline_ms - now);
            epoll_event evs[32];
            int n = ::epoll_wait(epoll_.get(), evs, 32,
                                 timeout < 0 ? -1 : int(std::max<int64_t>(0, timeout)));
            for (int i = 0; i < n; ++i) {
                Kind k = Kind(evs[i].data.u64 >> 32);
                int fd = int(uint32_t(evs[i].data.u64));
                if (k == kSignal) {
                    signalfd_siginfo si{};
                    while (::read(sigfd_.get(), &si, sizeof si) == sizeof si)
                        if ((si.ssi_signo == contract::kKeeldStop ||
                             si.ssi_signo == contract::kKeeldInterrupt) &&
                            !shutting_down_) {
                            log::info("stopping all services");
                            shutting_down_ = true;
                            // Workloads first (they depend on nothing here), then services in
                            // reverse start order.
                            for (auto& [wname, w] : services_)
                                if (w.workload) stop(w, w.spec ? w.spec->stop_timeout_s : 10);
                            for (auto it = order_.rbegin(); it != order_.rend(); ++it)
                                if (Service* s = find(*it))
                                    stop(*s, s->spec ? s->spec->stop_timeout_s : 10);
                        }
                } else if (k == kListen) {
                    accept_client();
                } else if (k == kClient) {
                    on_client(fd);
                } else if (k == kExec) {
                    on_exec_event(fd);
                } else if (k == kImport) {
                    on_import_event();
                } else {
                    for (auto& [name, s] : services_) {
                        if (k == kSpawn && s.pending && s.pending->fd() == fd) {
                            on_spawned(s);
                            break;
                        }
                        if (!s.has_container) continue;
                        if (k == kLog && s.log_rd.get() == fd) read_log(s);
                        if (k == kNotify && s.notify_rd.get() == fd) check_ready(s);
                        if (k == kPidfd && s.container.pidfd() == fd) on_exit(s);
                    }
                }
            }
            now = now_ms();
            for (auto& [name, s] : services_)
                if (s.pending && s.ready_deadline_ms >= 0 && now >= s.ready_deadline_ms)
                    setup_timed_out(s);
                else if (s.state == State::starting && s.spec->ready == service::ReadyKind::path)
                    check_ready(s);
                else if (s.state == State::starting && now >= s.ready_deadline_ms)
                    check_ready(s);
            report_boot_progress(now);
            for (auto& [name, s] : services_)
                if (s.kill_at_ms >= 0 && now >= s.kill_at_ms && s.has_container) {
                    s.log->note("did not stop in time: SIGKILL");
                    (void)s.container.signal(SIGKILL);
                    s.kill_at_ms = -1;
                }
            for (auto& [name, s] : services_)
                if (s.log_resume_ms >= 0 && now >= s.log_resume_ms) {
                    s.log_resume_ms = -1;
                    if (s.log_rd) watch(s.log_rd.get(), tag(kLog, s.log_rd.get()));
                }
            expire_execs(now);
            expire_waiters(now_ms());
            for (auto name : std::exchange(to_remove_, {}))
                (void)remove_workload(name, true);
            if (shutting_down_) {
                // A running import is let finish: killed in the middle of moving a name from
                // one image to another, it would lose the name.
                bool any = import_ || std::any_of(services_.begin(), services_.end(), [](auto& p) {
                               return p.second.has_container || p.second.pending;
                           });
                if (!any) {
                    ::unlink(cfg_.socket.c_str());
                    log::info("all services stopped");
                    return 0;
                }
            } else {
                schedule();
            }
        } catch (const std::exception& e) {
            log::error("event loop: {}", e.what());
        } catch (...) {
            log::error("event loop: unexpected error");
        }
    }
}

} // namespace keel::keeld
