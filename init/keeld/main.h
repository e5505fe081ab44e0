#pragma once

namespace keel::keeld {

// The `keeld` personality: `keeld --instance=system|user [--services DIR] [--state DIR]
// [--socket PATH] [--images DIR]`.
int keeld_main(int argc, char** argv) noexcept;

} // namespace keel::keeld
