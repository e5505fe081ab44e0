"""The service images as data: every services/NAME/ holds a service.yml and, for a service with
an image of its own, an image.yml that scripts/build-image's assembler (scripts/imagelib) turns
into /usr/share/keel/images/NAME. Assembles the images into a temporary tree, with stand-ins
for the recipes' packages (those build from Debian's source; the QEMU tests use the real ones),
and checks what the assembler made of each image.yml."""
import os
import stat
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

import yaml

SRC = Path(os.environ.get("KEEL_SOURCE_DIR") or Path(__file__).resolve().parents[2])
sys.dont_write_bytecode = True
sys.path.insert(0, str(SRC / "scripts"))
import recipes  # noqa: E402
from imagelib import images  # noqa: E402
from imagelib.modules import read_allow_list  # noqa: E402
from imagelib.tree import copy_tree, install_busybox, install_keel, skeleton  # noqa: E402


class ServiceImagesTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.specs = images.read_specs(SRC / "services")
        cls.tmp = tempfile.TemporaryDirectory(prefix="keel-images-")
        cls.tree = Path(cls.tmp.name) / "tree"
        cls.tree.mkdir()
        skeleton(cls.tree)
        copy_tree(SRC / "rootfs", cls.tree, {"KEEL_VERSION": "0", "KERNEL_VERSION": "k",
                                              "KERNEL_PACKAGE": "p", "KERNEL_PACKAGE_VERSION": "v"})
        applets = install_busybox(cls.tree)
        fake_keel = Path(cls.tmp.name) / "keel"
        fake_keel.write_bytes(b"\x7fELF stand-in")
        install_keel(cls.tree, fake_keel, None)
        # A stand-in per recipe: one file at each path the image.yml expects it at.
        cls.stand_in = Path(cls.tmp.name) / "package-file"
        cls.stand_in.write_bytes(b"stand-in")
        cls.stand_in.chmod(0o755)
        names = {p for s in cls.specs.values() for p in s.get("packages", [])}
        cls.packages = {n: recipes.Package("0", {f"usr/lib/stand-in/{n}": cls.stand_in}) for n in names}
        cls.sizes = images.install(cls.tree, cls.specs, cls.packages, set(applets), {
            "KEEL_VERSION": "0", "KERNEL_VERSION": "k", "KERNEL_PACKAGE": "p", "KERNEL_PACKAGE_VERSION": "v"})

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def image(self, name):
        return self.tree / images.IMAGES / name

    def test_every_service_dir_is_a_service_and_names_its_image(self):
        dirs = sorted(p.name for p in (SRC / "services").iterdir() if p.is_dir())
        self.assertIn("user-runtime", dirs)
        for name in dirs:
            service = yaml.safe_load((SRC / "services" / name / "service.yml").read_text())
            if name in self.specs:
                self.assertEqual(service["image"], name, f"services/{name}/service.yml")
            # keeld reads the definitions as /etc/keel/services/NAME.yml.
            installed = self.tree / "etc/keel/services" / f"{name}.yml"
            self.assertEqual(installed.read_bytes(), (SRC / "services" / name / "service.yml").read_bytes())
        self.assertEqual(sorted(p.name for p in (self.tree / images.IMAGES).iterdir()), sorted(self.specs))

    def test_images_hold_what_their_image_yml_says(self):
        for name, spec in self.specs.items():
            img = self.image(name)
            for d in images.MOUNT_POINTS + spec.get("dirs", []):
                self.assertTrue((img / d).is_dir(), f"{name}: {d}")
            self.assertEqual(stat.S_IMODE((img / "tmp").stat().st_mode), 0o1777)
            for applet in spec.get("busybox", []):
                self.assertEqual(os.readlink(img / "bin" / applet), "busybox")
            if spec.get("busybox"):
                # one busybox for the host and all images: a hard link, not a copy
                self.assertTrue((img / "bin/busybox").samefile(self.tree / "bin/busybox"))
            else:
                self.assertFalse((img / "bin").exists(), name)
            users = [l.split(":")[0] for l in (img / "etc/passwd").read_text().splitlines()]
            self.assertEqual(users, spec.get("users", ["root"]))
            for rel, target in spec.get("links", {}).items():
                self.assertEqual(os.readlink(img / rel), target)
            for rel in spec.get("empty", []):
                self.assertEqual((img / rel).stat().st_size, 0)
            for package in spec.get("packages", []):
                self.assertEqual((img / f"usr/lib/stand-in/{package}").read_bytes(), b"stand-in")
            for rel, mode in spec.get("modes", {}).items():
                self.assertEqual(stat.S_IMODE((img / rel).lstat().st_mode), int(mode, 8), f"{name}: {rel}")
            files = SRC / "services" / name / "files"
            for f in files.rglob("*") if files.exists() else []:
                rel = f.relative_to(files)
                target = img / (str(rel).removesuffix(".in"))
                self.assertTrue(target.exists(), f"{name}: {rel}")
                self.assertEqual(stat.S_IMODE(target.stat().st_mode), stat.S_IMODE(f.stat().st_mode))

    def test_a_bad_image_yml_is_refused_by_name(self):
        with tempfile.TemporaryDirectory() as tmp:
            d = Path(tmp) / "web"
            d.mkdir()
            (d / "service.yml").write_text("image: web\ncommand: [x]\n")
            (d / "image.yml").write_text("busybox: [sh]\napplets: [ls]\n")
            r = subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]);"
                                "from imagelib import images; images.read_specs(__import__('pathlib').Path(sys.argv[2]))",
                                str(SRC / "scripts"), tmp], capture_output=True, text=True)
            self.assertEqual(r.returncode, 1)
            self.assertIn("web/image.yml: expected a mapping with the keys", r.stderr)

    def test_recipes_share_one_interface(self):
        for name in {p for s in self.specs.values() for p in s.get("packages", [])}:
            module = __import__(f"recipes.{name.replace('-', '_')}", fromlist=["build"])
            self.assertTrue(callable(module.build), name)

    def test_the_module_allow_list_is_read_by_the_shared_reader(self):
        names = read_allow_list(SRC / "config/modules.yml")
        self.assertIn("ext4", names)
        self.assertTrue(all("-" not in n for n in names))


if __name__ == "__main__":
    unittest.main()
