#!/usr/bin/env python3
"""Builds nkvm's helper image as a one-layer docker-archive: BusyBox (sh, sleep, du, find, stat, rm)
with GNU tar and pigz from this machine, the image the test cluster's helper pods run too.

Usage: helper.py OUT_TAR IMAGE_REF
Files are added with fixed owners and timestamps (scripts/dockerarchive.py), so the same binaries
give the same archive. Prerequisites (Debian): busybox-static, tar, pigz.
"""
import os
import sys

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
sys.path.insert(0, os.path.join(root, "scripts"))
sys.path.insert(0, os.path.join(root, "end2end", "cluster"))
from dockerarchive import build_image  # noqa: E402
from images import layer_helper  # noqa: E402


def main():
    out, ref = sys.argv[1], sys.argv[2]
    build_image(out, ref, layer_helper, ["/bin/sh"])


if __name__ == "__main__":
    main()
