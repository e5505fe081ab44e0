"""Package recipes: what goes into a service image that is not busybox or the image's own
files. An image.yml names a recipe under `packages:` (`ntpd` is recipes/ntpd.py, `busybox-oci`
recipes/busybox_oci.py); scripts/build-image calls its build(cache) and copies the files it
returns, knowing nothing else of it.

The interface, one function per recipe module:
    build(cache: Path) -> Package
cache is build/cache; the recipe keeps what it builds there under a key of every input that
shapes it, so that a rebuild of the image only copies files.
"""

import importlib
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Package:
    version: str                                # what it was built from, for the fingerprint
    files: dict = field(default_factory=dict)   # path in the image -> file (Path) to copy there
    note: str = ""                              # for the size report: how it was built


def build(name, cache):
    """The Package of the recipe `name` (an image.yml `packages:` entry)."""
    module = importlib.import_module(f"recipes.{name.replace('-', '_')}")
    package = module.build(Path(cache))
    if not isinstance(package, Package):
        raise TypeError(f"recipe {name}: build() returned {package!r}, not a Package")
    return package
