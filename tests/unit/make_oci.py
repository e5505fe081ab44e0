#!/usr/bin/python3
"""Writes an image archive for the image store's unit tests (test_image.cc).

    make_oci.py SPEC.json OUT.tar

SPEC describes the archive:

    {"format": "oci" | "docker",          OCI image layout, or the legacy `docker save` form
     "nested_index": false,               oci: index.json -> an index blob -> the manifests
     "other_platform": false,             oci, nested: also an arm64/ppc64le manifest beside ours
     "ref_style": "containerd",           oci: names as io.containerd.image.name + a bare tag in
                                          org.opencontainers.image.ref.name; "tag": the bare tag only
     "corrupt_layer": [image, layer],     flip one byte of that layer's blob after the digests
     "wrong_diff_id": [image, layer],     the config lists a wrong diff_id for that layer
     "images": [{"names": ["busybox:latest"], "cmd": [...], "entrypoint": [...], "env": [...],
                 "working_dir": "", "user": "", "created": "2024-01-02T03:04:05Z",
                 "layers": [{"compression": "gzip" | "zstd" | "none",
                             "entries": [{"path": "etc/x", "type": "file" | "dir" | "symlink" |
                                          "hardlink" | "char" | "fifo", "data": "text",
                                          "mode": 420, "uid": 0, "gid": 0, "target": "...",
                                          "major": 1, "minor": 3, "xattrs": {"user.k": "v"}}]}]}]}

Layer tars are deterministic (fixed mtime, gzip without a timestamp), so equal entries make
equal layers: that is how tests share a layer between images.
"""

import gzip
import hashlib
import io
import json
import subprocess
import sys
import tarfile

MTIME = 1700000000
ARCH = {"x86_64": "amd64", "aarch64": "arm64"}


def layer_tar(entries):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for e in entries:
            t = tarfile.TarInfo(e["path"])
            t.mtime = MTIME
            t.uid, t.gid = e.get("uid", 0), e.get("gid", 0)
            kind = e.get("type", "file")
            data = e.get("data", "").encode()
            t.mode = e.get("mode", 0o755 if kind == "dir" else 0o644)
            if e.get("xattrs"):
                t.pax_headers = {"SCHILY.xattr." + k: v for k, v in e["xattrs"].items()}
            if kind == "file":
                t.type, t.size = tarfile.REGTYPE, len(data)
                tf.addfile(t, io.BytesIO(data))
                continue
            t.type = {"dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE,
                      "char": tarfile.CHRTYPE, "fifo": tarfile.FIFOTYPE}[kind]
            t.linkname = e.get("target", "")
            t.devmajor, t.devminor = e.get("major", 0), e.get("minor", 0)
            tf.addfile(t)
    return buf.getvalue()


def compress(data, how):
    if how == "gzip":
        return gzip.compress(data, mtime=0)
    if how == "zstd":
        return subprocess.run(["zstd", "-q", "-c"], input=data, stdout=subprocess.PIPE, check=True).stdout
    return data


def sha(data):
    return hashlib.sha256(data).hexdigest()


def host_arch():
    import platform
    return ARCH.get(platform.machine(), platform.machine())


class Archive:
    def __init__(self):
        self.files = {}  # name -> bytes
        self.links = {}  # name -> symlink target

    def blob(self, data):
        h = sha(data)
        self.files[f"blobs/sha256/{h}"] = data
        return h

    def write(self, path):
        with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tf:
            names = sorted(self.files, key=lambda n: (n in ("index.json", "manifest.json"), n))
            for name in names:
                t = tarfile.TarInfo(name)
                t.mtime, t.mode, t.size = MTIME, 0o644, len(self.files[name])
                tf.addfile(t, io.BytesIO(self.files[name]))
            for name, target in self.links.items():
                t = tarfile.TarInfo(name)
                t.mtime, t.type, t.linkname = MTIME, tarfile.SYMTYPE, target
                tf.addfile(t)


def config_for(image, diff_ids, arch):
    return json.dumps({
        "architecture": arch, "os": "linux", "created": image.get("created", "2024-01-02T03:04:05Z"),
        "config": {"Entrypoint": image.get("entrypoint"), "Cmd": image.get("cmd"), "Env": image.get("env", []),
                   "WorkingDir": image.get("working_dir", ""), "User": image.get("user", "")},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + d for d in diff_ids]},
    }, sort_keys=True).encode()


def build_layers(spec, i, image):
    """(tar, blob, stored) for each layer: `stored` is what the archive holds, the blob with the
    requested corruption applied; descriptors keep naming the good blob."""
    out = []
    for j, layer in enumerate(image["layers"]):
        tar = layer_tar(layer["entries"])
        blob = compress(tar, layer.get("compression", "gzip"))
        stored = blob
        if spec.get("corrupt_layer") == [i, j]:
            b = bytearray(blob)
            b[len(b) // 2] ^= 0x01
            stored = bytes(b)
        out.append((tar, blob, stored))
    return out


def diff_ids_for(spec, i, layers):
    ids = [sha(tar) for tar, _, _ in layers]
    if spec.get("wrong_diff_id", [None])[0] == i:
        ids[spec["wrong_diff_id"][1]] = sha(b"something else")
    return ids


def oci(spec, out):
    a = Archive()
    a.files["oci-layout"] = b'{"imageLayoutVersion":"1.0.0"}'
    descriptors = []
    for i, image in enumerate(spec["images"]):
        manifests = []
        arches = [host_arch()] + (["arm64" if host_arch() != "arm64" else "ppc64le"] if spec.get("other_platform") else [])
        for arch in arches:
            layers = build_layers(spec, i, image)
            layer_descs = []
            for (tar, blob, stored), layer in zip(layers, image["layers"]):
                suffix = {"gzip": "+gzip", "zstd": "+zstd"}.get(layer.get("compression", "gzip"), "")
                layer_descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar" + suffix,
                                    "digest": "sha256:" + sha(blob), "size": len(blob)})
                a.files[f"blobs/sha256/{sha(blob)}"] = stored
            config = config_for(image, diff_ids_for(spec, i, layers), arch)
            manifest = json.dumps({
                "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "digest": "sha256:" + a.blob(config), "size": len(config)},
                "layers": layer_descs,
            }, sort_keys=True).encode()
            manifests.append({"mediaType": "application/vnd.oci.image.manifest.v1+json",
                              "digest": "sha256:" + a.blob(manifest), "size": len(manifest),
                              "platform": {"os": "linux", "architecture": arch}})
        if spec.get("nested_index"):
            index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                                "manifests": manifests}, sort_keys=True).encode()
            top = {"mediaType": "application/vnd.oci.image.index.v1+json",
                   "digest": "sha256:" + a.blob(index), "size": len(index)}
        else:
            top = {k: v for k, v in manifests[0].items() if k != "platform"}
        for name in image.get("names", []) or [None]:
            d = dict(top)
            if name:
                repo, tag = name.rsplit(":", 1)
                if spec.get("ref_style", "containerd") == "containerd":
                    full = name if "/" in repo else "docker.io/library/" + name
                    d["annotations"] = {"io.containerd.image.name": full, "org.opencontainers.image.ref.name": tag}
                else:
                    d["annotations"] = {"org.opencontainers.image.ref.name": tag}
            descriptors.append(d)
    a.files["index.json"] = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                                        "manifests": descriptors}, sort_keys=True).encode()
    a.write(out)


def docker(spec, out):
    a = Archive()
    manifest = []
    written = {}  # layer tar digest -> member name, for `docker save`'s symlinks to repeated layers
    for i, image in enumerate(spec["images"]):
        layers = build_layers(spec, i, image)
        names = []
        for j, (tar, blob, stored) in enumerate(layers):
            v1 = sha(f"{i}/{j}/{sha(blob)}".encode())
            name = f"{v1}/layer.tar"
            if sha(blob) in written:
                a.links[name] = f"../{written[sha(blob)]}"
            else:
                a.files[name] = stored
                written[sha(blob)] = name
            a.files[f"{v1}/VERSION"] = b"1.0"
            names.append(name)
        config = config_for(image, diff_ids_for(spec, i, layers), host_arch())
        a.files[f"{sha(config)}.json"] = config
        manifest.append({"Config": f"{sha(config)}.json", "RepoTags": image.get("names") or None, "Layers": names})
    a.files["manifest.json"] = json.dumps(manifest).encode()
    a.write(out)


def main():
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    {"oci": oci, "docker": docker}[spec.get("format", "oci")](spec, sys.argv[2])


if __name__ == "__main__":
    main()
