// File system helpers for the image store: trees that are removed without following symlinks,
// and directories opened strictly beneath a layer's root.
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"
#include "common/fd.h"

namespace keel::image {

// mkdir -p.
Status make_dirs(const std::string& path, mode_t mode);

// Removes `path` and everything below it; a missing path is not an error. Symlinks are removed,
// never followed. Directories without write permission are made writable first: a layer
// unpacked without privileges keeps its 0555 directories (/proc, /sys) and would otherwise be
// impossible to delete by the user who made it.
Status remove_tree(const std::string& path);

// A tar member's name made canonical: "./" components, repeated and trailing slashes dropped.
// An absolute path or a ".." component is an error: nothing in an image may name a place outside
// it. The root itself is "".
Result<std::string> clean_relative_path(std::string_view name);

// Names in a directory, without "." and "..".
Result<std::vector<std::string>> list_dir(const std::string& path);

// Opens directory `rel` (relative, already checked for ".." and absolute paths) beneath
// `root_fd`, refusing to pass through any symlink. With `create`, missing directories are made
// (0755).
Result<Fd> open_dir_beneath(int root_fd, const std::string& rel, bool create);

} // namespace keel::image
