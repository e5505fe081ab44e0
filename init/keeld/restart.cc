#include "keeld/restart.h"

#include <algorithm>

#include "common/backoff.h"

namespace keel::keeld {

int64_t backoff_ms(int failures) {
    // 100 ms, 200 ms, 400 ms, ... 30 s.
    return backoff_delay(failures, kBackoffMinMs, kBackoffMaxMs);
}

RestartDecision after_exit(service::RestartPolicy policy, bool failed, int64_t ran_ms,
                           int restart_limit, int& failures) {
    using service::RestartPolicy;
    if (policy == RestartPolicy::no || (policy == RestartPolicy::on_failure && !failed))
        return {failed ? RestartDecision::Kind::hold_failed : RestartDecision::Kind::hold_stopped,
                0};
    if (ran_ms >= kStableRunMs) failures = 0;
    failures++;
    if (failures > restart_limit) return {RestartDecision::Kind::give_up, 0};
    return {RestartDecision::Kind::restart, backoff_ms(failures)};
}

} // namespace keel::keeld
