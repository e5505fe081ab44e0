// A pty pair for a container with a terminal: the slave becomes its stdio and controlling
// terminal, the master stays with whoever proxies it (`keel runtime run`, or the CLI that
// keeld hands it to for `keel run -it` and `keel exec -it`).
#pragma once

#include "common/error.h"
#include "common/fd.h"

namespace keel {

struct Pty {
    Fd master, slave;
};
Result<Pty> open_pty();

} // namespace keel
