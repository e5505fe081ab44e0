// The `keel` command line (also installed as `ros`).
#pragma once

namespace keel::cli {

// `keel ...` / `ros ...`: returns the process exit code.
int main(int argc, char** argv) noexcept;

} // namespace keel::cli
