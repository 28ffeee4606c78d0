#!/usr/bin/env python3
"""Push a Wasm plugin to an OCI registry as an image, in one of the layouts Higress
publishes, speaking the distribution API directly (Python stdlib only; no docker, no oras).

  oci-push.py --registry 127.0.0.1:5000 --repository plugins/transformer --tag 1.0.0 \
      --layout go --wasm plugin.wasm [--user U --password P] [--https]

Layouts (what the gateway's puller extracts from, gateway/src/wasm/oci/layout.rs):
  go      Higress Go/Rust plugins (oras): README.md and spec.yaml layers, then
          plugin.tar.gz last as application/vnd.oci.image.layer.v1.tar+gzip
  docker  Docker schema 2: plugin.tar.gz as application/vnd.docker.image.rootfs.diff.tar.gzip
  cpp     Higress C++ plugins: config.json and the raw module
          (application/vnd.module.wasm.content.layer.v1+wasm), two layers

Prints the manifest digest (sha256:<hex>) on stdout.
"""

import argparse
import base64
import gzip
import hashlib
import http.client
import io
import json
import sys
import tarfile
import urllib.parse

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


class Registry:
    def __init__(self, host, https, user, password):
        self.host = host
        self.https = https
        self.auth = None
        if user is not None:
            pair = f"{user}:{password or ''}".encode()
            self.auth = "Basic " + base64.b64encode(pair).decode()

    def request(self, method, target, body=None, headers=None):
        conn_type = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
        conn = conn_type(self.host, timeout=30)
        h = dict(headers or {})
        if self.auth:
            h["Authorization"] = self.auth
        if body is not None:
            h["Content-Length"] = str(len(body))
        conn.request(method, target, body=body, headers=h)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        return resp.status, resp.headers, data

    def push_blob(self, repo, blob):
        digest = "sha256:" + hashlib.sha256(blob).hexdigest()
        status, _, _ = self.request("HEAD", f"/v2/{repo}/blobs/{digest}")
        if status == 200:
            return digest
        status, headers, data = self.request("POST", f"/v2/{repo}/blobs/uploads/", body=b"")
        if status != 202:
            sys.exit(f"starting an upload to {repo}: {status} {data[:300]!r}")
        location = headers["Location"]
        parsed = urllib.parse.urlsplit(location)
        target = parsed.path + ("?" + parsed.query if parsed.query else "")
        sep = "&" if parsed.query else "?"
        target += f"{sep}digest={urllib.parse.quote(digest)}"
        status, _, data = self.request(
            "PUT", target, body=blob, headers={"Content-Type": "application/octet-stream"}
        )
        if status != 201:
            sys.exit(f"uploading {digest}: {status} {data[:300]!r}")
        return digest

    def push_manifest(self, repo, tag, media_type, manifest):
        body = json.dumps(manifest, separators=(",", ":")).encode()
        status, _, data = self.request(
            "PUT", f"/v2/{repo}/manifests/{tag}", body=body, headers={"Content-Type": media_type}
        )
        if status != 201:
            sys.exit(f"putting the manifest {repo}:{tag}: {status} {data[:500]!r}")
        return "sha256:" + hashlib.sha256(body).hexdigest()


def tar_gz(wasm):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("plugin.wasm")
        info.size = len(wasm)
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(wasm))
    # mtime=0: the same module always makes the same layer.
    return gzip.compress(raw.getvalue(), mtime=0)


def descriptor(reg, repo, media_type, blob):
    return {"mediaType": media_type, "digest": reg.push_blob(repo, blob), "size": len(blob)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--registry", required=True, help="host:port")
    ap.add_argument("--repository", required=True)
    ap.add_argument("--tag", default="latest")
    ap.add_argument("--layout", choices=["go", "docker", "cpp"], required=True)
    ap.add_argument("--wasm", required=True, help="the module to push")
    ap.add_argument("--user")
    ap.add_argument("--password")
    ap.add_argument("--https", action="store_true")
    a = ap.parse_args()
    wasm = open(a.wasm, "rb").read()
    reg = Registry(a.registry, a.https, a.user, a.password)
    repo = a.repository
    if a.layout == "go":
        media_type = OCI_MANIFEST
        manifest = {
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": descriptor(reg, repo, "application/vnd.oci.image.config.v1+json", b"{}"),
            "layers": [
                descriptor(reg, repo, "application/vnd.module.wasm.doc.v1+markdown", b"# A plugin\n"),
                descriptor(reg, repo, "application/vnd.module.wasm.spec.v1+yaml", b"apiVersion: 1.0.0\n"),
                descriptor(reg, repo, "application/vnd.oci.image.layer.v1.tar+gzip", tar_gz(wasm)),
            ],
        }
    elif a.layout == "docker":
        media_type = DOCKER_MANIFEST
        layer = tar_gz(wasm)
        diff_id = "sha256:" + hashlib.sha256(gzip.decompress(layer)).hexdigest()
        config = json.dumps(
            {
                "architecture": "wasm",
                "os": "wasip1",
                "config": {},
                "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            }
        ).encode()
        manifest = {
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": descriptor(reg, repo, "application/vnd.docker.container.image.v1+json", config),
            "layers": [descriptor(reg, repo, "application/vnd.docker.image.rootfs.diff.tar.gzip", layer)],
        }
    else:
        media_type = OCI_MANIFEST
        manifest = {
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": descriptor(reg, repo, "application/vnd.oci.image.config.v1+json", b"{}"),
            "layers": [
                descriptor(reg, repo, "application/vnd.module.wasm.config.v1+json", b"{}"),
                descriptor(reg, repo, "application/vnd.module.wasm.content.layer.v1+wasm", wasm),
            ],
        }
    print(reg.push_manifest(repo, a.tag, media_type, manifest))


if __name__ == "__main__":
    main()
