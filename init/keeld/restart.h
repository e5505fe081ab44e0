// What happens to a service after its process exits on its own: the restart policy with
// exponential backoff and a limit. Pure (time is passed in), so the state machine is unit
// tested with fake time; keeld's Daemon::on_exit applies the decision.
#pragma once

#include <cstdint>

#include "service/service_spec.h"

namespace keel::keeld {

inline constexpr int64_t kBackoffMinMs = 100, kBackoffMaxMs = 30000;
// A run this long means the service was working: its failure count starts over.
inline constexpr int64_t kStableRunMs = 10000;

struct RestartDecision {
    enum class Kind { restart, hold_stopped, hold_failed, give_up } kind;
    int64_t delay_ms = 0; // restart: when, from now
};

// `failures` is the service's count of consecutive failures; it is updated here.
RestartDecision after_exit(service::RestartPolicy policy, bool failed, int64_t ran_ms,
                           int restart_limit, int& failures);
// The delay before start attempt number `failures` + 1 after a failed start.
int64_t backoff_ms(int failures);

} // namespace keel::keeld
