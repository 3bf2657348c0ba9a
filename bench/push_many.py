#!/usr/bin/env python3
"""Pushes N distinct small manifests to one repository, fast (benchmark set-up, not a client).

    push_many.py URL TOKEN REPO N [THREADS]

Uploads one empty config blob, then PUTs manifests that differ only in an annotation, tagged
t0..t{N-1}, over keep-alive connections with a bearer token. Each push is one manifest and one
audit event on the server. Exits non-zero on the first unexpected answer.
"""
import hashlib
import http.client
import sys
import threading
import urllib.parse

url, token, repo, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
threads = int(sys.argv[5]) if len(sys.argv) > 5 else 4
host = urllib.parse.urlparse(url)
auth = {"Authorization": f"Bearer {token}"}
cfg = b"{}"
cfg_digest = "sha256:" + hashlib.sha256(cfg).hexdigest()
failed = []


def conn():
    return http.client.HTTPConnection(host.hostname, host.port, timeout=60)


def check(resp, want, what):
    body = resp.read()
    if resp.status not in want:
        raise SystemExit(f"{what}: {resp.status} {body[:300]!r}")


c = conn()
c.request("POST", f"/v2/{repo}/blobs/uploads/?digest={cfg_digest}", body=cfg, headers=auth)
check(c.getresponse(), (201,), "config upload")


def worker(first, step):
    try:
        c = conn()
        for i in range(first, n, step):
            body = (
                '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",'
                f'"config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{cfg_digest}","size":2}},'
                f'"layers":[],"annotations":{{"n":"{i}"}}}}'
            ).encode()
            headers = dict(auth)
            headers["Content-Type"] = "application/vnd.oci.image.manifest.v1+json"
            c.request("PUT", f"/v2/{repo}/manifests/t{i}", body=body, headers=headers)
            check(c.getresponse(), (201,), f"manifest t{i}")
    except BaseException as e:  # noqa: BLE001 - reported by the main thread
        failed.append(e)


ts = [threading.Thread(target=worker, args=(k, threads)) for k in range(threads)]
for t in ts:
    t.start()
for t in ts:
    t.join()
if failed:
    raise SystemExit(f"push failed: {failed[0]}")
