#!/usr/bin/env python3
"""Builds the test cluster's container images as one-layer docker-archive tarballs (no Docker, no registry).

Usage: images.py OUT_DIR PAUSE_BINARY
Writes OUT_DIR/{pause,workload,helper}.tar, importable with `ctr -n k8s.io images import`.
- nkvm.local/pause:1     the pod sandbox process
- nkvm.local/workload:1  busybox (sh, sleep, dd, ...) for fixture workloads
- nkvm.local/helper:1    busybox + GNU tar + pigz/gzip: what nkvm's helper pods run
"""
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
from dockerarchive import add_bytes, add_dir, add_dynamic, add_file, add_symlink, build_image  # noqa: E402

BUSYBOX = "/bin/busybox"


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


def main():
    out_dir, pause_bin = sys.argv[1], sys.argv[2]
    os.makedirs(out_dir, exist_ok=True)
    out = lambda name: os.path.join(out_dir, name + ".tar")  # noqa: E731
    build_image(out("pause"), "nkvm.local/pause:1", lambda tf: layer_pause(tf, pause_bin), ["/pause"])
    build_image(out("workload"), "nkvm.local/workload:1", layer_workload, ["/bin/sh"])
    build_image(out("helper"), "nkvm.local/helper:1", layer_helper, ["/bin/sh"])


if __name__ == "__main__":
    main()
