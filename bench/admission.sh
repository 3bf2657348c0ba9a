#!/usr/bin/env bash
# The admission webhook's latency and throughput, against a real Wharf holding ten signed
# images (issue 13's performance goals: a warm review of a 10-container pod with signature and
# registry rules under 5 ms at p99 and over 5,000 reviews/s; a cold review, one signature
# verification per image, under 100 ms).
#
#   bench/admission.sh [WHARF_BINARY] [SECONDS] [CONNECTIONS]
#
# Phases:
#   warm      wrk, CONNECTIONS connections, POST /admission/v1/validate of one 10-container
#             pod (images pinned by digest, each needing a signature by the policy's key):
#             every verdict comes from the webhook's cache after the first review.
#   cold      curl, one review at a time, against a webhook whose caches keep nothing
#             (--verdict-ttl-seconds 0 --tag-ttl-seconds 0): each review fetches and verifies
#             the ten images' signatures from the registry (ten distinct digests, once each).
#   mutate    wrk on POST /admission/v1/mutate of the same pod by tag: ten tags resolved to
#             digests (cached after the first review) and a JSONPatch built.
# Plain HTTP on loopback (the API server keeps its HTTPS connections open, so the handshake is
# not per review). Needs wrk, curl, python3. Prints one line per phase.
set -euo pipefail
BIN=$(realpath "${1:-target/release/wharf}")
SECS=${2:-8}
CONNS=${3:-16}
WORK=$(mktemp -d /tmp/wharf-admission-bench.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_up() { for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$1/healthz" && return; sleep 0.1; done; echo "nothing on $1" >&2; exit 1; }

REG=$(port)
mkdir -p "$WORK/data" # serve refuses a missing --data-dir without --init (mkdir suits older binaries too)
"$BIN" serve --listen "127.0.0.1:$REG" --data-dir "$WORK/data" > "$WORK/registry.log" 2>&1 &
wait_up "$REG"

# Ten images (distinct configs), each signed with one key.
export COSIGN_PASSWORD=bench
"$BIN" key generate --output-prefix "$WORK/release" > /dev/null 2>&1
python3 - "$REG" "$WORK" <<'PY'
import hashlib, json, sys, urllib.request
reg, work = sys.argv[1], sys.argv[2]
base = f"http://127.0.0.1:{reg}"
def req(method, url, data=None, headers={}):
    r = urllib.request.Request(url, data=data, method=method, headers=headers)
    return urllib.request.urlopen(r)
digests = []
for i in range(10):
    repo = f"bench/svc{i}"
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}, "config": {"Labels": {"i": str(i)}}}).encode()
    d = "sha256:" + hashlib.sha256(cfg).hexdigest()
    req("POST", f"{base}/v2/{repo}/blobs/uploads/?digest={d}", cfg, {"Content-Type": "application/octet-stream"})
    m = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": d, "size": len(cfg)},
                    "layers": []}).encode()
    req("PUT", f"{base}/v2/{repo}/manifests/v1", m, {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    digests.append("sha256:" + hashlib.sha256(m).hexdigest())
open(f"{work}/digests", "w").write("\n".join(digests) + "\n")
PY
for i in $(seq 0 9); do
  "$BIN" sign "127.0.0.1:$REG/bench/svc$i:v1" --key "$WORK/release.key" > /dev/null 2>&1
done

cat > "$WORK/policy.toml" <<EOF
[pss]
level = "baseline"
mode = "enforce"
[images]
allowed_registries = ["127.0.0.1:$REG"]
registry = "enforce"
digest = "enforce"
[signatures]
mode = "enforce"
[[signatures.key]]
name = "release"
path = "$WORK/release.pub"
[[signatures.require]]
match = "127.0.0.1:$REG"
[mutate]
pin = true
EOF

# A 10-container pod review: by digest (validate) and by tag (mutate).
python3 - "$REG" "$WORK" <<'PY'
import json, sys
reg, work = sys.argv[1], sys.argv[2]
digests = open(f"{work}/digests").read().split()
def review(images):
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "bench-0001", "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "namespace": "apps", "operation": "CREATE", "userInfo": {"username": "bench"},
        "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "ten", "namespace": "apps"},
                   "spec": {"securityContext": {"runAsNonRoot": True},
                            "containers": [{"name": f"c{i}", "image": img,
                                            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                                            "securityContext": {"allowPrivilegeEscalation": False}}
                                           for i, img in enumerate(images)]}}}}
json.dump(review([f"127.0.0.1:{reg}/bench/svc{i}@{d}" for i, d in enumerate(digests)]), open(f"{work}/validate.json", "w"))
json.dump(review([f"127.0.0.1:{reg}/bench/svc{i}:v1" for i in range(10)]), open(f"{work}/mutate.json", "w"))
PY

for phase in validate mutate; do
  cat > "$WORK/$phase.lua" <<EOF
local f = io.open("$WORK/$phase.json", "rb"); wrk.body = f:read("*a"); f:close()
wrk.method = "POST"; wrk.headers["Content-Type"] = "application/json"
done = function(summary, latency, requests)
  io.write(string.format("RESULT %.0f %.3f %.3f %d %d\n", summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, summary.errors.status, summary.errors.timeout))
end
EOF
done

start_webhook() { # extra flags...
  HOOK=$(port)
  "$BIN" admission --policy "$WORK/policy.toml" --listen "127.0.0.1:$HOOK" "$@" > "$WORK/hook.log" 2>&1 &
  HOOK_PID=$!
  wait_up "$HOOK"
}
check() { # phase: one review, must be answered as expected
  local out; out=$(curl -sf -H 'Content-Type: application/json' --data-binary @"$WORK/$1.json" "http://127.0.0.1:$HOOK/admission/v1/$1")
  python3 -c 'import json,sys; r=json.loads(sys.argv[1])["response"]; ok = r["allowed"] and (sys.argv[2] != "mutate" or "patch" in r); sys.exit(0 if ok else "unexpected answer: " + sys.argv[1][:400])' "$out" "$1"
}

# warm + mutate: one webhook, caches on (WHARF_LOG=warn: no log line per review).
WHARF_LOG=warn start_webhook
check validate; check mutate
for phase in validate mutate; do
  r=$(wrk -t2 -c"$CONNS" -d"${SECS}s" -s "$WORK/$phase.lua" "http://127.0.0.1:$HOOK/admission/v1/$phase" | grep '^RESULT')
  read -r _ rps p50 p99 bad timeouts <<< "$r"
  printf '%-8s %8.0f reviews/s   p50 %6.2f ms   p99 %6.2f ms   non-2xx %s  timeouts %s   (wrk -c%s, %ss)\n' \
    "$([ "$phase" = validate ] && echo warm || echo mutate)" "$rps" "$p50" "$p99" "$bad" "$timeouts" "$CONNS" "$SECS"
done
kill "$HOOK_PID"; wait "$HOOK_PID" 2>/dev/null || true

# cold: caches keep nothing; each review verifies the ten signatures again.
WHARF_LOG=warn start_webhook --verdict-ttl-seconds 0 --tag-ttl-seconds 0
check validate
python3 - "$HOOK" "$WORK" <<'PY'
import http.client, json, sys, time
hook, work = sys.argv[1], sys.argv[2]
body = open(f"{work}/validate.json", "rb").read()
c = http.client.HTTPConnection("127.0.0.1", int(hook))
times = []
for _ in range(100):
    t = time.perf_counter()
    c.request("POST", "/admission/v1/validate", body, {"Content-Type": "application/json"})
    r = c.getresponse(); data = r.read()
    times.append((time.perf_counter() - t) * 1000)
    assert r.status == 200 and json.loads(data)["response"]["allowed"], data[:300]
times.sort()
print(f"cold     {len(times)} reviews, 10 signature verifications each   p50 {times[49]:6.2f} ms   p99 {times[98]:6.2f} ms   max {times[-1]:6.2f} ms")
PY
