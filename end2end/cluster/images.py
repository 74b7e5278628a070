#!/usr/bin/env python3
"""Builds the test cluster's container images as one-layer docker-archive tarballs (no Docker, no registry).

Usage: images.py OUT_DIR PAUSE_BINARY
Writes OUT_DIR/{pause,workload,helper}.tar, importable with `ctr -n k8s.io images import`.
- nkvm.local/pause:1     the pod sandbox process
- nkvm.local/workload:1  busybox (sh, sleep, dd, ...) for fixture workloads
- nkvm.local/helper:1    busybox + GNU tar + pigz/gzip: what nkvm's helper pods run
"""
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile

BUSYBOX = "/bin/busybox"


def add_file(tf, src, dst, mode=None):
    info = tf.gettarinfo(src, arcname=dst.lstrip("/"))
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mtime = 0
    if mode is not None:
        info.mode = mode
    with open(src, "rb") as fh:
        tf.addfile(info, fh)


def add_dir(tf, dst, mode=0o755):
    info = tarfile.TarInfo(dst.lstrip("/"))
    info.type = tarfile.DIRTYPE
    info.mode = mode
    tf.addfile(info)


def add_bytes(tf, dst, data, mode=0o644):
    info = tarfile.TarInfo(dst.lstrip("/"))
    info.size = len(data)
    info.mode = mode
    tf.addfile(info, io.BytesIO(data))


def add_symlink(tf, dst, target):
    info = tarfile.TarInfo(dst.lstrip("/"))
    info.type = tarfile.SYMTYPE
    info.linkname = target
    tf.addfile(info)


def shared_libs(binary):
    """Absolute paths of the shared libraries (and loader) a dynamic binary needs."""
    out = subprocess.run(["ldd", binary], capture_output=True, text=True).stdout
    libs = []
    for line in out.splitlines():
        parts = line.split()
        for p in parts:
            if p.startswith("/"):
                libs.append(p)
                break
    return libs


def busybox_base(tf, skip=()):
    for d in ["/bin", "/etc", "/tmp", "/proc", "/sys", "/dev", "/var", "/root", "/data"]:
        add_dir(tf, d, 0o1777 if d == "/tmp" else 0o755)
    add_file(tf, BUSYBOX, "/bin/busybox", 0o755)
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True).stdout.split()
    for applet in applets:
        if applet != "busybox" and applet not in skip:
            add_symlink(tf, "/bin/" + applet, "busybox")
    add_bytes(tf, "/etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
    add_bytes(tf, "/etc/group", b"root:x:0:\nnogroup:x:65534:\n")
    return set("/bin/" + a for a in applets)


def add_dynamic(tf, binary, dst, seen):
    add_file(tf, binary, dst, 0o755)
    for lib in shared_libs(binary):
        real = os.path.realpath(lib)
        for path in {lib, real}:
            if path in seen:
                continue
            seen.add(path)
            parent = os.path.dirname(path)
            parts = parent.strip("/").split("/")
            for i in range(1, len(parts) + 1):
                d = "/" + "/".join(parts[:i])
                if d not in seen:
                    seen.add(d)
                    add_dir(tf, d)
            if path == real:
                add_file(tf, real, path, 0o755)
            else:
                add_symlink(tf, path, os.path.relpath(real, parent))


def layer_pause(tf, pause_bin):
    add_file(tf, pause_bin, "/pause", 0o755)


def layer_workload(tf):
    busybox_base(tf)


def layer_helper(tf):
    busybox_base(tf, skip=("tar",))
    seen = {"/bin"}
    # GNU tar replaces busybox's applet: full long-name/sparse/large-file support and honest exit codes.
    tar_bin = shutil.which("tar")
    for name, dst in [(tar_bin, "/usr/bin/tar"), (shutil.which("pigz"), "/usr/bin/pigz")]:
        if name:
            add_dynamic(tf, os.path.realpath(name), dst, seen)
    add_symlink(tf, "/bin/tar", "/usr/bin/tar")


def build_image(out_dir, name, tag, fill, entry):
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w", format=tarfile.GNU_FORMAT) as tf:
        fill(tf)
    layer_bytes = layer.getvalue()
    diff_id = "sha256:" + hashlib.sha256(layer_bytes).hexdigest()
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": entry, "Env": ["PATH=/usr/bin:/bin"], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "nkvm end2end/cluster/images.py"}],
    }
    config_bytes = json.dumps(config, sort_keys=True).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    layer_dir = diff_id.split(":")[1]
    manifest = [{"Config": config_name, "RepoTags": [f"{name}:{tag}"], "Layers": [f"{layer_dir}/layer.tar"]}]
    path = os.path.join(out_dir, name.split("/")[-1] + ".tar")
    with tarfile.open(path + ".tmp", mode="w") as out:
        add_bytes(out, config_name, config_bytes)
        add_dir(out, layer_dir)
        add_bytes(out, f"{layer_dir}/layer.tar", layer_bytes)
        add_bytes(out, "manifest.json", json.dumps(manifest).encode())
    os.replace(path + ".tmp", path)
    print(f"{name}:{tag} -> {path} ({len(layer_bytes) // 1024} KiB)")


def main():
    out_dir, pause_bin = sys.argv[1], sys.argv[2]
    os.makedirs(out_dir, exist_ok=True)
    build_image(out_dir, "nkvm.local/pause", "1", lambda tf: layer_pause(tf, pause_bin), ["/pause"])
    build_image(out_dir, "nkvm.local/workload", "1", layer_workload, ["/bin/sh"])
    build_image(out_dir, "nkvm.local/helper", "1", layer_helper, ["/bin/sh"])


if __name__ == "__main__":
    main()
