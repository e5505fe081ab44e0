// The OCI runtime's on-disk state: one directory per container under the runtime root
// (default /run/keel/runtime/<id>), holding state.json and, while the container is created but
// not started, its exec fifo. A container's liveness is never taken from the file alone: the
// pid is checked against the process start time recorded with it, so a reused pid is not
// mistaken for the container.
#pragma once

#include <sys/types.h>

#include <map>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/fd.h"

namespace keel::runtime::state {

enum class Phase { created, running, stopped };
const char* phase_name(Phase p); // the OCI "status" value

struct ContainerState {
    std::string id;
    pid_t pid = 0;
    unsigned long long starttime = 0; // /proc/PID/stat field 22, for pid-reuse detection
    std::string bundle;
    std::string cgroup;  // absolute cgroup path, empty when none
    std::string created; // RFC 3339
    std::map<std::string, std::string> annotations;
};

// Container ids are path components: letters, digits, '_', '-', '.', not starting with '.'.
Status check_id(const std::string& id);

class Store {
  public:
    explicit Store(std::string root) : root_(std::move(root)) {}
    const std::string& root() const { return root_; }
    std::string dir(const std::string& id) const { return root_ + "/" + id; }
    std::string fifo(const std::string& id) const { return dir(id) + "/exec.fifo"; }

    // Creates the container's directory; an existing one is "container ID already exists".
    Status create(const std::string& id) const;
    Status save(const ContainerState& st) const; // atomic: temp file, fsync, rename
    Result<ContainerState> load(const std::string& id) const;
    Status remove(const std::string& id) const;
    std::vector<std::string> list() const;

  private:
    std::string root_;
};

// Live status: created while the exec fifo exists, running while the recorded process exists,
// else stopped.
Phase phase_of(const Store& store, const ContainerState& st);

// pidfd of the container's process, or an invalid Fd when it is gone (or the pid was reused).
Fd open_process(const ContainerState& st);

unsigned long long process_starttime(pid_t pid); // 0 when the process does not exist
std::string now_rfc3339();

// The OCI state document: ociVersion, id, status, pid, bundle, annotations.
std::string to_json(const ContainerState& st, Phase phase, bool pretty = true);

} // namespace keel::runtime::state
