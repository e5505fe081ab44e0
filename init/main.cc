// One static binary, many personalities: what it is called decides what it does. The image
// links /sbin/init, /usr/bin/keeld, /usr/bin/keel and /usr/bin/ros to it.
#include <cstdio>
#include <cstring>
#include <string_view>

#include "cli/cli.h"
#include "keeld/main.h"
#include "pid1/init.h"

int main(int argc, char** argv) {
    std::string_view self = argc > 0 && argv[0] ? argv[0] : "keel";
    if (auto slash = self.rfind('/'); slash != std::string_view::npos)
        self.remove_prefix(slash + 1);
    if (self == "keel" || self == "ros" || self.empty()) return keel::cli::main(argc, argv);
    if (self == "init" || self == "keel-init") return keel::pid1::init_main(argc, argv);
    if (self == "keeld") return keel::keeld::keeld_main(argc, argv);
    // Unknown names (a copy renamed by hand, the memfd re-exec) behave as the CLI.
    return keel::cli::main(argc, argv);
}
