#!/usr/bin/env bash
# Times the unlock of a PKCS#11 slot through SoftHSM2: N runs (default 21) of `cofferfs fsck`
# on a token-only volume, the unlock alone as cofferfs logs it (module load, token lookup,
# login, key lookup, one C_Decrypt), and the whole command next to `keys list` (no unlock).
# Prints a Markdown section; with --write it replaces the "Unlock through a PKCS#11 token"
# section of docs/PERFORMANCE.md (scripts/bench.sh keeps that section when it rewrites the
# file). COFFERFS_BIN picks the binary (default: a release build).
# Usage: scripts/bench-unlock.sh [--write] [N]
set -euo pipefail
cd "$(dirname "$0")/.."
WRITE=0
[ "${1:-}" = --write ] && { WRITE=1; shift; }
N=${1:-21}
MODULE=/usr/lib/softhsm/libsofthsm2.so
command -v softhsm2-util >/dev/null || { echo "needs softhsm2 (apt-get install softhsm2)" >&2; exit 1; }
if [ -z "${COFFERFS_BIN:-}" ]; then
    cargo build --release --quiet --bin cofferfs
    COFFERFS_BIN=${CARGO_TARGET_DIR:-target}/release/cofferfs
    PROFILE=release
else
    PROFILE="$COFFERFS_BIN"
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/tokens"
printf 'directories.tokendir = %s\nobjectstore.backend = file\n' "$work/tokens" > "$work/softhsm2.conf"
export SOFTHSM2_CONF="$work/softhsm2.conf"
softhsm2-util --init-token --free --label bench --pin 1234 --so-pin 5678 > /dev/null
echo 1234 > "$work/pin"
"$COFFERFS_BIN" init --pkcs11-module "$MODULE" --pkcs11-token bench --pin-file "$work/pin" \
    "$work/c" > /dev/null 2>&1

python3 - "$COFFERFS_BIN" "$work" "$N" "$PROFILE" > "$work/section.md" <<'PY'
import os, re, statistics, subprocess, sys, time
bin, work, n, profile = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
env = dict(os.environ, RUST_LOG="cofferfs=info")
def timed(args):
    t = time.monotonic()
    p = subprocess.run([bin] + args, env=env, stdin=subprocess.DEVNULL,
                       capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"{args}: {p.stderr}")
    return time.monotonic() - t, p.stderr
unlock, whole, base = [], [], []
for _ in range(n):
    secs, err = timed(["fsck", "--pin-file", f"{work}/pin", f"{work}/c"])
    m = re.search(r"PKCS#11: slot \d+ decrypted .* in ([0-9.]+) ms", err)
    if not m:
        sys.exit(f"no unlock time logged: {err}")
    unlock.append(float(m.group(1)))
    whole.append(secs * 1e3)
    base.append(timed(["keys", "list", f"{work}/c"])[0] * 1e3)
ver = subprocess.run(["softhsm2-util", "--version"], capture_output=True, text=True).stdout.strip()
load = open("/proc/loadavg").read().split()[:3]
print("## Unlock through a PKCS#11 token\n")
cmd = f"scripts/bench-unlock.sh --write {n}"
if profile != "release":
    cmd = f"COFFERFS_BIN={profile} " + cmd
print(f"Written by `{cmd}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: "
      f"SoftHSM2 {ver} (file object store), cofferfs binary: {profile}; {os.cpu_count()} cores, "
      f"load average {' '.join(load)}"
      + (" (busier than its cores: the minimum is nearer an idle machine's figure)"
         if float(load[0]) > (os.cpu_count() or 1) else "")
      + f". Medians of {n} runs.\n")
print("| what | median ms | min ms | max ms |")
print("|---|---|---|---|")
for name, v in [("unlock alone (load module, find token, login, find key, one C_Decrypt), as logged", unlock),
                ("`cofferfs fsck --pin-file` of an empty volume, whole command", whole),
                ("`cofferfs keys list` (opens the store, no unlock), whole command", base)]:
    print(f"| {name} | {statistics.median(v):.1f} | {min(v):.1f} | {max(v):.1f} |")
PY
cat "$work/section.md"
if [ $WRITE = 1 ]; then
    doc=docs/PERFORMANCE.md
    python3 scripts/lib/put_section.py "$doc" "$work/section.md"
    echo "written to $doc" >&2
fi
