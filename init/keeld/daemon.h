// keeld: one runtime daemon, run as the system instance (by PID 1) or the user instance. It
// starts each enabled service in its own container as soon as its dependencies run,
// supervises them directly through pidfds in one epoll loop (no shim per container), restarts
// them with backoff, keeps their logs, and answers the CLI on its control socket.
#pragma once

#include <sys/types.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "audit/audit.h"
#include "common/fd.h"
#include "image/store.h"
#include "keeld/log_buffer.h"
#include "runtime/container.h"
#include "service/service_spec.h"

#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>

namespace keel::keeld {

struct DaemonConfig {
    std::string instance = "system";
    // The image's services, then the user's own on the state partition.
    std::vector<std::string> services_dirs = {"/etc/keel/services", "/var/lib/keel/services"};
    std::string state_dir = "/var/lib/keel"; // config.yml overlay and log/
    std::string socket;                      // default /run/keel/<instance>.sock
    service::ContainerContext ctx;
    int notify_fd = -1;  // "READY\n" once every enabled service has started (PID 1 reads it)
    std::string cmdline; // the kernel command line, for keel.config.* overrides
};

// The `keel` admin group's id from /etc/group, or -1.
gid_t admin_gid();

enum class State {
    disabled,
    stopped,
    waiting,
    starting,
    running,
    stopping,
    backoff,
    failed,
    invalid,
    exited
};
const char* state_name(State s);

struct Service {
    std::string name;
    std::optional<service::ServiceSpec> spec; // empty when the file is invalid
    std::string error;                        // why it is invalid / failed / waiting
    bool enabled = false;
    State state = State::stopped;
    runtime::Container container;
    bool has_container = false;
    std::optional<runtime::PendingStart> pending; // spawned, setup and exec still under way
    Fd log_rd;
    int64_t log_resume_ms = -1;     // its output came faster than it is kept: read again then
    Fd notify_rd;                   // ready: notify, the read end of the service's fd 3
    int64_t ready_deadline_ms = -1; // starting: killed as failed if not ready by then
    int64_t started_ms = 0;
    int restarts = 0;
    int failures = 0; // consecutive
    int64_t next_start_ms = -1;
    int64_t kill_at_ms = -1;
    bool stop_requested = false;
    bool hold = false; // stopped by the user, or finished: not started again until asked
    bool start_after_stop = false; // `restart`: started again once the stop is done
    std::string last_exit;         // "exited with 1", "exec: ENOENT ..."
    std::unique_ptr<LogBuffer> log;
    // A workload of the user instance (`keel run`), rather than a service file's service.
    bool workload = false;
    bool auto_remove = false; // --rm: removed once it has exited
    bool tty = false;       // -it: its first start makes a terminal in the container (spec.console)
    Fd tty_master;          // ... whose master goes to the CLI with the `run` reply
    Fd stdin_fd;            // -i: the CLI's own stdin, passed with the request, for its first start
    std::string image;      // as given to `keel run`
    std::string image_id;   // what it resolved to in the store
    std::string rootfs_dir; // its overlay mount
    int64_t created_unix = 0;
    std::optional<int> exit_code;
    bool oom_killed = false;
};

class Daemon {
  public:
    explicit Daemon(DaemonConfig cfg);
    int run() noexcept; // the event loop; returns the exit code after SIGTERM

  private:
    // lifecycle
    void load();
    void schedule() noexcept;
    void start(Service& s) noexcept;
    void on_spawned(Service& s) noexcept;
    void start_failed(Service& s, const std::string& why) noexcept;
    void stop(Service& s, int timeout_s) noexcept;
    void on_exit(Service& s) noexcept;
    void read_log(Service& s) noexcept;
    void check_ready(Service& s) noexcept;
    void setup_timed_out(Service& s) noexcept;
    void report_boot_progress(int64_t now) noexcept;
    void became_ready(Service& s) noexcept;
    bool deps_running(const Service& s, std::string& waiting_for) const;
    void maybe_ready() noexcept;
    Service* find(const std::string& name);

    // control
    void accept_client() noexcept;
    void on_client(int fd) noexcept;
    nlohmann::json handle(const nlohmann::json& req, bool& close_after);
    nlohmann::json describe(const Service& s, bool full) const;
    Status persist_enabled(const std::string& name, bool enabled);
    // config.yml on the state partition: read, changed, validated, written atomically.
    Status change_overlay(const std::string& key, const YAML::Node& value);
    void reload_config();
    nlohmann::json handle_config(const std::string& cmd, const nlohmann::json& req);
    // The user instance (workloads.cc).
    void setup_user_instance();
    nlohmann::json handle_workload(const std::string& cmd, const nlohmann::json& req);
    Result<std::string> create_workload(const nlohmann::json& req);
    nlohmann::json handle_image(const std::string& cmd, const nlohmann::json& req);
    // `keel audit` (audit.cc): the host (system instance) and every container.
    nlohmann::json handle_audit();
    audit::HostFacts host_facts();
    void seed_images();
    std::unique_ptr<image::Store> images_; // the user instance's OCI image store
    Status remove_workload(const std::string& name, bool force);
    std::vector<std::string> to_remove_; // --rm workloads that have exited
    // `keel exec`: a process in a running workload's namespaces and cgroup. Its output is
    // kept until the CLI has read it all after the exit.
    struct Exec {
        std::string workload;
        std::optional<runtime::PendingStart> pending; // spawned, not exec'd yet
        int64_t start_deadline_ms = -1;               // ... killed if still pending then
        std::string start_error;                      // why it did not start: the CLI's answer
        runtime::Container container;
        Fd out;
        std::string output;
        bool done = false;
        int code = 0;
    };
    std::map<int, Exec> execs_;
    // `wait`: clients told when a workload has finished, or at their deadline, whichever is
    // first (keel run in the foreground returns the moment its workload exits).
    struct Waiter {
        int fd;
        std::string name;
        int64_t deadline_ms;
    };
    std::vector<Waiter> waiters_;
    int current_client_ = -1;
    // `keel image import` runs in a child process: unpacking a large image takes long, and
    // keeld answers everyone else meanwhile. One at a time; the reply goes to the client that
    // asked once the child has written it and exited.
    struct Import {
        pid_t pid = -1;
        Fd out;          // the child's reply, as JSON, then EOF
        int client = -1; // -1 once that client has gone
        std::string reply;
    };
    std::optional<Import> import_;
    void on_import_event() noexcept;
    void finished(const std::string& name) noexcept;
    void expire_waiters(int64_t now) noexcept;
    int next_exec_ = 1;
    nlohmann::json start_exec(const nlohmann::json& req);
    void on_exec_event(int fd) noexcept;
    void expire_execs(int64_t now) noexcept;
    static constexpr int64_t kExecStartTimeoutMs = 10000;
    Result<std::vector<std::string>> environment(const service::ServiceSpec& spec) const;

    void watch(int fd, uint64_t tag);
    void unwatch(int fd);

    DaemonConfig cfg_;
    std::map<std::string, Service> services_;
    std::vector<std::string> order_;
    Fd epoll_, sigfd_, listen_;
    struct Client {
        Fd fd;
        std::string buf;
        bool handshaken = false;
        std::vector<Fd> fds; // passed with messages (SCM_RIGHTS), oldest first; at most a few
    };
    std::map<int, Client> clients_;
    Fd reply_fd_;        // passed with the reply being sent (a pty master), then closed here
    Fd take_client_fd(); // the oldest descriptor the current client passed, or none
    gid_t admin_gid_ = gid_t(-1); // the `keel` group: may use the control socket
    YAML::Node config_;           // the effective configuration
    std::string config_error_;    // the overlay's, when it is not the one in use
    bool ready_sent_ = false;
    int64_t next_progress_ms_ = 0; // boot progress: the next report
    bool shutting_down_ = false;
    int64_t boot_ms_ = 0;
};

} // namespace keel::keeld
