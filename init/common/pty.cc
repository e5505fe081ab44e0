#include "common/pty.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/ioctl.h>

namespace keel {

Result<Pty> open_pty() {
    Pty p;
    p.master.reset(::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC));
    if (!p.master) return sys_error("open /dev/ptmx");
    if (::grantpt(p.master.get()) < 0 || ::unlockpt(p.master.get()) < 0) return sys_error("unlock pty");
    // TIOCGPTPEER opens the slave through the master, without a path lookup that a
    // container could race.
    p.slave.reset(::ioctl(p.master.get(), TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC));
    if (!p.slave) return sys_error("open pty slave");
    return p;
}

} // namespace keel
