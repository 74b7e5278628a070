#!/usr/bin/env python3
"""hostPath volume provisioner of the local test cluster (test tooling, not part of nkvm).

Watches PersistentVolumeClaims of StorageClasses whose provisioner is `nkvm.local/hostpath`. Once the
scheduler has chosen a node (annotation volume.kubernetes.io/selected-node, WaitForFirstConsumer), it
creates a directory under --volumes and a PersistentVolume pre-bound to the claim, with the claim's
access modes (so ReadWriteOnce, ReadWriteMany and ReadWriteOncePod all work). Released volumes with
reclaim policy Delete are removed with their directory. Talks to the apiserver with the stdlib only.
"""
import argparse
import base64
import json
import os
import shutil
import ssl
import sys
import threading
import time
import urllib.error
import urllib.request

PROVISIONER = "nkvm.local/hostpath"
SELECTED_NODE = "volume.kubernetes.io/selected-node"


def log(msg):
    print(time.strftime("%H:%M:%S"), msg, flush=True)


class Api:
    def __init__(self, kubeconfig):
        server = token = ca = None
        with open(kubeconfig) as fh:
            for line in fh:
                key, _, value = line.strip().partition(": ")
                if key == "server":
                    server = value
                elif key == "token":
                    token = value
                elif key == "certificate-authority-data":
                    ca = base64.b64decode(value).decode()
        if not (server and token and ca):
            sys.exit("provisioner: kubeconfig lacks server, token or certificate-authority-data")
        self.server, self.token = server, token
        self.ctx = ssl.create_default_context(cadata=ca)

    def request(self, method, path, body=None, timeout=30):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.server + path, data=data, method=method)
        req.add_header("Authorization", "Bearer " + self.token)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        return urllib.request.urlopen(req, context=self.ctx, timeout=timeout)

    def get(self, path):
        with self.request("GET", path) as resp:
            return json.load(resp)

    def watch(self, path, resource_version):
        sep = "&" if "?" in path else "?"
        url = f"{path}{sep}watch=1&allowWatchBookmarks=true&timeoutSeconds=240&resourceVersion={resource_version}"
        with self.request("GET", url, timeout=300) as resp:
            for line in resp:
                if line.strip():
                    yield json.loads(line)


class Provisioner:
    def __init__(self, api, volumes, node):
        self.api, self.volumes, self.node = api, os.path.realpath(volumes), node

    def storage_class(self, name):
        try:
            return self.api.get(f"/apis/storage.k8s.io/v1/storageclasses/{name}")
        except urllib.error.HTTPError:
            return None

    def on_claim(self, pvc):
        meta, spec = pvc["metadata"], pvc.get("spec", {})
        if pvc.get("status", {}).get("phase") != "Pending" or spec.get("volumeName"):
            return
        if SELECTED_NODE not in meta.get("annotations", {}) or meta.get("deletionTimestamp"):
            return
        sc_name = spec.get("storageClassName")
        sc = self.storage_class(sc_name) if sc_name else None
        if not sc or sc.get("provisioner") != PROVISIONER:
            return
        if spec.get("volumeMode", "Filesystem") != "Filesystem":
            log(f"skip {meta['namespace']}/{meta['name']}: only Filesystem volumes are supported")
            return
        name = "pvc-" + meta["uid"]
        path = os.path.join(self.volumes, name)
        os.makedirs(path, exist_ok=True)
        os.chmod(path, 0o777)
        size = spec.get("resources", {}).get("requests", {}).get("storage", "1Gi")
        pv = {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": name, "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER}},
            "spec": {
                "capacity": {"storage": size},
                "accessModes": spec.get("accessModes", ["ReadWriteOnce"]),
                "persistentVolumeReclaimPolicy": sc.get("reclaimPolicy", "Delete"),
                "storageClassName": sc_name,
                "volumeMode": "Filesystem",
                "claimRef": {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "namespace": meta["namespace"],
                    "name": meta["name"],
                    "uid": meta["uid"],
                },
                "hostPath": {"path": path, "type": "Directory"},
                "nodeAffinity": {
                    "required": {
                        "nodeSelectorTerms": [
                            {"matchExpressions": [
                                {"key": "kubernetes.io/hostname", "operator": "In", "values": [self.node]}
                            ]}
                        ]
                    }
                },
            },
        }
        try:
            self.api.request("POST", "/api/v1/persistentvolumes", pv).close()
            log(f"provisioned {name} for {meta['namespace']}/{meta['name']} ({size})")
        except urllib.error.HTTPError as err:
            if err.code != 409:
                log(f"create {name} failed: HTTP {err.code} {err.read()[:300]!r}")

    def on_volume(self, pv):
        meta, spec = pv["metadata"], pv.get("spec", {})
        if meta.get("annotations", {}).get("pv.kubernetes.io/provisioned-by") != PROVISIONER:
            return
        if pv.get("status", {}).get("phase") not in ("Released", "Failed"):
            return
        if spec.get("persistentVolumeReclaimPolicy") != "Delete":
            return
        path = os.path.realpath(spec.get("hostPath", {}).get("path", ""))
        if os.path.dirname(path) == self.volumes:
            shutil.rmtree(path, ignore_errors=True)
        try:
            self.api.request("DELETE", f"/api/v1/persistentvolumes/{meta['name']}").close()
            log(f"deleted released volume {meta['name']}")
        except urllib.error.HTTPError as err:
            if err.code != 404:
                log(f"delete {meta['name']} failed: HTTP {err.code}")

    def loop(self, path, handler):
        while True:
            try:
                listed = self.api.get(path)
                for item in listed.get("items", []):
                    handler(item)
                rv = listed["metadata"]["resourceVersion"]
                for event in self.api.watch(path, rv):
                    if event.get("type") in ("ADDED", "MODIFIED"):
                        handler(event["object"])
                    elif event.get("type") == "ERROR":
                        break
            except Exception as exc:  # keep serving: the apiserver may restart
                log(f"watch {path}: {exc!r}; retrying")
                time.sleep(1)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--volumes", required=True)
    parser.add_argument("--node", required=True)
    args = parser.parse_args()
    os.makedirs(args.volumes, exist_ok=True)
    prov = Provisioner(Api(args.kubeconfig), args.volumes, args.node)
    threading.Thread(target=prov.loop, args=("/api/v1/persistentvolumes", prov.on_volume), daemon=True).start()
    log(f"provisioner {PROVISIONER} serving volumes under {prov.volumes}")
    prov.loop("/api/v1/persistentvolumeclaims", prov.on_claim)


if __name__ == "__main__":
    main()
