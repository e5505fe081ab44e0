"""busybox:latest as an OCI image archive (scripts/make-busybox-oci, from the host's static
/bin/busybox), for the user runtime's image: keeld --instance=user imports it into its store
on its first start, so that `keel run busybox ...` needs no registry.

Cached in build/cache/busybox-oci/ by the busybox binary (its contents and its mtime, which
make-busybox-oci stamps on every entry), the script and SOURCE_DATE_EPOCH."""

import hashlib
import json
import os
from pathlib import Path

from imagelib.util import ROOT, run, sha256
from recipes import Package

BUSYBOX = Path("/bin/busybox")  # busybox-static
SCRIPT = ROOT / "scripts/make-busybox-oci"


def build(cache):
    st = BUSYBOX.stat()
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    key = hashlib.sha256(json.dumps([sha256(BUSYBOX), st.st_mtime_ns, sha256(SCRIPT), epoch])
                         .encode()).hexdigest()[:16]
    out = cache / "busybox-oci" / key / "busybox.tar"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        run([str(SCRIPT), str(tmp), "--busybox", str(BUSYBOX)])
        os.replace(tmp, out)
    return Package(key, {"usr/share/keel/workload-images/busybox.tar": out})
