"""config/modules.yml, the kernel module allow-list, read by the one function here: scripts/build-image
and the QEMU tests (tests/qemu/test_boot.py) share it. keel-init has its own C++ reader
(init/config/modules_list.h), which is the reference for what the file may hold."""

import yaml

from imagelib.util import ROOT, die


def read_allow_list(path=ROOT / "config/modules.yml"):
    """config/modules.yml: `modules:` a list of names or {name, params} mappings; `lock: bool`.
    Returns the module names, in order, spelled as modprobe and modules.dep spell them (`_`)."""
    origin = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        die(f"{origin}: {e}")
    if not isinstance(doc, dict) or set(doc) - {"modules", "lock"}:
        die(f"{origin}: expected a mapping with the keys 'modules' and (optional) 'lock'")
    names = []
    for i, entry in enumerate(doc.get("modules") or []):
        name = entry if isinstance(entry, str) else entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not name:
            die(f"{origin}: modules[{i}]: an entry needs a name")
        names.append(name.replace("-", "_"))
    return names
