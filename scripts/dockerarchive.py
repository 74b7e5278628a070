"""Writes single-layer container images as docker-archive tarballs, without Docker or a registry.

The archive (manifest.json with RepoTags, an image config with architecture/os/rootfs.diff_ids, and
<sha>/layer.tar) is what `ctr images import`, `docker load` and `podman load` accept. Files are added
with fixed owners and timestamps, so the same inputs give the same image digest.
Used by end2end/cluster/images.py (test images) and deploy/image/build.sh (the nkvm image).
"""
import hashlib
import io
import json
import os
import subprocess
import tarfile


def add_file(tf, src, dst, mode=None, uid=0, gid=0):
    info = tf.gettarinfo(src, arcname=dst.lstrip("/"))
    info.uid, info.gid = uid, gid
    info.uname = info.gname = "root" if uid == 0 else ""
    info.mtime = 0
    if mode is not None:
        info.mode = mode
    with open(src, "rb") as fh:
        tf.addfile(info, fh)


def add_dir(tf, dst, mode=0o755, uid=0, gid=0):
    info = tarfile.TarInfo(dst.lstrip("/"))
    info.type = tarfile.DIRTYPE
    info.mode = mode
    info.uid, info.gid = uid, gid
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


def add_tree(tf, src_dir, dst_dir):
    """Adds a directory tree (regular files and directories only), sorted, owned by root."""
    add_dir(tf, dst_dir)
    for root, dirs, files in os.walk(src_dir):
        dirs.sort()
        rel = os.path.relpath(root, src_dir)
        base = dst_dir if rel == "." else os.path.join(dst_dir, rel)
        for d in dirs:
            add_dir(tf, os.path.join(base, d))
        for f in sorted(files):
            src = os.path.join(root, f)
            if os.path.isfile(src) and not os.path.islink(src):
                add_file(tf, src, os.path.join(base, f), 0o644)


def shared_libs(binary):
    """Absolute paths of the shared libraries (and loader) a dynamic binary needs."""
    out = subprocess.run(["ldd", binary], capture_output=True, text=True).stdout
    libs = []
    for line in out.splitlines():
        for part in line.split():
            if part.startswith("/"):
                libs.append(part)
                break
    return libs


def add_parents(tf, path, seen):
    parts = os.path.dirname(path).strip("/").split("/")
    for i in range(1, len(parts) + 1):
        d = "/" + "/".join(parts[:i])
        if d not in seen:
            seen.add(d)
            add_dir(tf, d)


def add_dynamic(tf, binary, dst, seen):
    """Adds a dynamically linked binary with the shared libraries `ldd` lists for it."""
    add_file(tf, binary, dst, 0o755)
    for lib in shared_libs(binary):
        real = os.path.realpath(lib)
        for path in {lib, real}:
            if path in seen:
                continue
            seen.add(path)
            add_parents(tf, path, seen)
            if path == real:
                add_file(tf, real, path, 0o755)
            else:
                add_symlink(tf, path, os.path.relpath(real, os.path.dirname(path)))


def build_image(path, ref, fill, entrypoint, cmd=None, env=None, user=None, ports=None, labels=None):
    """Writes the docker-archive `path` for image `ref` (name:tag); `fill(tarfile)` adds the files."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w", format=tarfile.GNU_FORMAT) as tf:
        fill(tf)
    layer_bytes = layer.getvalue()
    diff_id = "sha256:" + hashlib.sha256(layer_bytes).hexdigest()
    config = {"Entrypoint": entrypoint, "Env": env or ["PATH=/usr/bin:/bin"], "WorkingDir": "/"}
    if cmd:
        config["Cmd"] = cmd
    if user:
        config["User"] = user
    if ports:
        config["ExposedPorts"] = {p: {} for p in ports}
    if labels:
        config["Labels"] = labels
    image_config = {
        "architecture": "amd64",
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "nkvm scripts/dockerarchive.py"}],
    }
    config_bytes = json.dumps(image_config, sort_keys=True).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    layer_dir = diff_id.split(":")[1]
    manifest = [{"Config": config_name, "RepoTags": [ref], "Layers": [f"{layer_dir}/layer.tar"]}]
    with tarfile.open(path + ".tmp", mode="w") as out:
        add_bytes(out, config_name, config_bytes)
        add_dir(out, layer_dir)
        add_bytes(out, f"{layer_dir}/layer.tar", layer_bytes)
        add_bytes(out, "manifest.json", json.dumps(manifest).encode())
    os.replace(path + ".tmp", path)
    print(f"{ref} -> {path} ({len(layer_bytes) // 1024} KiB, config sha256:{config_name[:-5]})")
