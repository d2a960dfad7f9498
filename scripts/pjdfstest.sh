#!/usr/bin/env bash
# Runs the pjdfstest POSIX suite (the Rust rewrite, crate `pjdfstest`) against a fresh cofferfs
# volume mounted with --allow-other and, for reference, against a multithreaded bindfs mount
# of a plain directory, then prints the counts side by side. Always unmounts.
#
#   scripts/pjdfstest.sh [TEST_PATTERN...]      # e.g. scripts/pjdfstest.sh chmod rename
#
# Needs root (the suite switches users and makes device nodes). Logs stay in $PJD_WORK
# (default: a temporary directory, printed at the end).
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" = 0 ] || { echo "pjdfstest.sh: run as root" >&2; exit 1; }

export PATH="$HOME/.cargo/bin:$PATH"
command -v pjdfstest >/dev/null || cargo install --locked pjdfstest
if ! command -v bindfs >/dev/null || ! command -v fusermount3 >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bindfs fuse3 >/dev/null
fi

cargo build --release --locked --quiet
BIN="${CARGO_TARGET_DIR:-target}/release/cofferfs"
BIN="$(realpath "$BIN")"

WORK="${PJD_WORK:-$(mktemp -d /tmp/cofferfs-pjdfstest.XXXXXX)}"
mkdir -p "$WORK"
C="$WORK/cipher" M="$WORK/plain" B="$WORK/bind-src" BM="$WORK/bind-mnt" S="$WORK/secondary"
mkdir -p "$M" "$B" "$BM" "$S"
chmod 755 "$WORK"

daemon=""
cleanup() {
    cd /
    if grep -q " $M " /proc/mounts; then "$BIN" umount "$M" || fusermount3 -uz "$M" || true; fi
    if grep -q " $BM " /proc/mounts; then fusermount3 -uz "$BM" || true; fi
    if [ -n "$daemon" ] && kill -0 "$daemon" 2>/dev/null; then
        sleep 1
        kill "$daemon" 2>/dev/null || true
    fi
}
trap cleanup EXIT INT TERM

# The suite's dummy users: existing system accounts, so nothing is added to the machine.
cat >"$WORK/pjdfstest.toml" <<'EOF'
[features]
posix_fallocate = {}
utime_now = {}
utimensat = {}
rename_ctime = {}

[settings]
naptime = 0.01

[dummy_auth]
entries = [
  ["nobody", "nogroup"],
  ["daemon", "daemon"],
]
EOF

echo pw | "$BIN" init --argon2-memory 1024 --argon2-time 1 --argon2-lanes 1 "$C" >/dev/null
echo pw | "$BIN" mount -f --allow-other "$C" "$M" 2>"$WORK/cofferfs-daemon.log" &
daemon=$!
for _ in $(seq 100); do grep -q " $M " /proc/mounts && break; sleep 0.1; done
grep -q " $M " /proc/mounts || { echo "cofferfs did not mount" >&2; exit 1; }
bindfs --multithreaded "$B" "$BM"
chmod 777 "$M" "$BM"

run() { # name dir
    (cd "$2" && pjdfstest -c "$WORK/pjdfstest.toml" -p "$2" -s "$S" "${@:3}") >"$WORK/$1.log" 2>&1 || true
}
run cofferfs "$M" "$@"
run bindfs "$BM" "$@"

count() { grep -cE "[[:space:]]$2\$" "$WORK/$1.log" || true; }
printf '%-10s %7s %7s %7s\n' "" passed failed skipped
for fs in cofferfs bindfs; do
    printf '%-10s %7s %7s %7s\n' "$fs" "$(count $fs ok)" "$(count $fs FAILED)" "$(count $fs skipped)"
done
echo
echo "cofferfs failures:"
grep -E '[[:space:]]FAILED$' "$WORK/cofferfs.log" | awk '{print "  " $1}' || true
echo "logs: $WORK"
