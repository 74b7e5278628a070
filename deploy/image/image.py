#!/usr/bin/env python3
"""Assembles the nkvm container image (one layer, no Docker): the static `nkvm` binary, the web site,
a passwd entry for the unprivileged user and the CA bundle for kubeconfigs that reach public clusters.

Usage: image.py BINARY SITE_DIR CA_BUNDLE OUT_TAR IMAGE_REF
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
from dockerarchive import add_bytes, add_dir, add_file, add_tree, build_image  # noqa: E402

UID = 65532


def fill(binary, site, ca_bundle):
    def layer(tf):
        for d in ["/etc", "/etc/ssl", "/etc/ssl/certs", "/usr", "/usr/local", "/usr/local/bin", "/usr/share"]:
            add_dir(tf, d)
        add_dir(tf, "/tmp", 0o1777)
        add_dir(tf, "/data", 0o700, UID, UID)
        add_file(tf, binary, "/usr/local/bin/nkvm", 0o755)
        add_tree(tf, site, "/usr/share/nkvm/site")
        add_file(tf, ca_bundle, "/etc/ssl/certs/ca-certificates.crt", 0o644)
        add_bytes(tf, "/etc/passwd", f"root:x:0:0:root:/:/sbin/nologin\nnkvm:x:{UID}:{UID}:nkvm:/data:/sbin/nologin\n".encode())
        add_bytes(tf, "/etc/group", f"root:x:0:\nnkvm:x:{UID}:\n".encode())

    return layer


def main():
    binary, site, ca_bundle, out, ref = sys.argv[1:6]
    if not os.path.isfile(os.path.join(site, "pkg", "nkvm_bg.wasm")):
        sys.exit(f"image.py: {site}/pkg/nkvm_bg.wasm is missing; build the site first")
    env = [
        "PATH=/usr/local/bin",
        "LEPTOS_SITE_ROOT=/usr/share/nkvm/site",
        "NKVM_DATA_DIR=/data",
        "NKVM_LISTEN=0.0.0.0:8080",
        "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
    ]
    labels = {
        "org.opencontainers.image.title": "nkvm",
        "org.opencontainers.image.description": "Kubernetes volume inventory and backup",
    }
    build_image(out, ref, fill(binary, site, ca_bundle), ["/usr/local/bin/nkvm"], cmd=["serve"], env=env,
                user=f"{UID}:{UID}", ports=["8080/tcp"], labels=labels)


if __name__ == "__main__":
    main()
