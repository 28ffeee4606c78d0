"""Drive a Nacos config service with the official Python client (nacos-sdk-python's
v1 NacosClient), one operation per run:

    nacos_sdk.py --server HOST:PORT [--namespace NS] [--username U --password P]
                 publish DATA_ID GROUP [--encrypt-key-file F]   (content on stdin)
                 get DATA_ID GROUP                              (content on stdout; exit 3: none)
                 remove DATA_ID GROUP

`--encrypt-key-file` seals the content as Higress standalone stores Secrets: AES-CBC
with the file's bytes as key (16, 24 or 32), the key's first 16 bytes as IV, PKCS#5
padding, base64 with the URL alphabet, behind `enc|`. Run it in a scratch directory:
the SDK writes its snapshot files there.
"""

import argparse
import base64
import logging
import sys

import nacos
from Crypto.Cipher import AES
from Crypto.Util.Padding import pad


def seal(content: str, key: bytes) -> str:
    sealed = AES.new(key, AES.MODE_CBC, key[:16]).encrypt(pad(content.encode(), 16))
    return "enc|" + base64.urlsafe_b64encode(sealed).decode()


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--server", required=True)
    p.add_argument("--namespace", default="higress-system")
    p.add_argument("--username")
    p.add_argument("--password")
    p.add_argument("op", choices=["publish", "get", "remove"])
    p.add_argument("data_id")
    p.add_argument("group")
    p.add_argument("--encrypt-key-file")
    a = p.parse_args()
    logging.getLogger("nacos").setLevel(logging.ERROR)
    client = nacos.NacosClient(
        a.server,
        namespace=a.namespace,
        username=a.username,
        password=a.password,
    )
    # Snapshot and failover files go to the working directory (the test's temp dir).
    client.set_options(snapshot_base="snapshot", failover_base="failover")
    if a.op == "publish":
        content = sys.stdin.read()
        if a.encrypt_key_file:
            with open(a.encrypt_key_file, "rb") as f:
                content = seal(content, f.read())
        ok = client.publish_config(a.data_id, a.group, content, config_type="yaml")
        print("published" if ok else "refused")
        return 0 if ok else 1
    if a.op == "get":
        content = client.get_config(a.data_id, a.group, no_snapshot=True)
        if content is None:
            return 3
        sys.stdout.write(content)
        return 0
    ok = client.remove_config(a.data_id, a.group)
    print("removed" if ok else "refused")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
