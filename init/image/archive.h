// The image archive itself (an OCI layout or a `docker save` tar): its members unpacked into a
// work directory, each hashed on the way, because both formats are read by name in an order
// the tar file does not follow.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "common/error.h"

struct archive;

namespace keel::image {

// libarchive's error as ours: "truncated archive" when the data ends early, else its message
// and errno.
Error archive_error(struct archive* a);

struct Member {
    std::string file;   // its content, under the work directory
    std::string sha256; // hex, of the content
    int64_t size = 0;
};

class ArchiveMembers {
  public:
    // Unpacks every regular file of the tar (plain, gzip or zstd) at `archive_path` into
    // `work_dir`, under generated names: member names are only keys, never paths on disk.
    // With `fd` >= 0 the archive is read from that open file (passed by a client over the control
    // socket, from a mount namespace this process cannot see) and `archive_path` only names it.
    static Result<ArchiveMembers> unpack(const std::string& archive_path,
                                         const std::string& work_dir, int fd = -1);

    // The member `name`, with symlinks and hard links between members resolved (`docker save`
    // links a layer it has already written: <id>/layer.tar -> ../<other id>/layer.tar); null
    // when it is missing.
    const Member* find(const std::string& name) const;
    // A small member's content (a JSON document), refused above `limit` bytes.
    Result<std::string> read(const std::string& name, size_t limit = 16u << 20) const;

  private:
    std::map<std::string, Member> files_;
    std::map<std::string, std::string> links_; // member name -> the member it stands for
};

} // namespace keel::image
