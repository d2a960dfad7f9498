#!/usr/bin/env bash
# The main job, end to end: build cofferfs, create a demo volume with a demo password, mount it,
# write files through the mount, show them and their ciphertext, unmount.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v fusermount3 >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fuse3 >/dev/null
    else
        echo "please install fuse3 (apt-get install fuse3)" >&2
        exit 1
    fi
fi

echo "== building (release; a first build takes a few minutes)"
# Cargo's own progress goes to stderr; the path of the binary comes from its JSON messages, so
# CARGO_TARGET_DIR (or a target-dir in .cargo/config.toml) is honoured.
bin=$(cargo build --release --locked --message-format=json-render-diagnostics |
    sed -n 's/.*"executable":"\([^"]*\/cofferfs\)".*/\1/p' | tail -n 1)
if [ ! -x "$bin" ]; then
    echo "cargo build did not report the cofferfs binary" >&2
    exit 1
fi
echo "binary: $bin"

demo=$(mktemp -d /tmp/cofferfs-demo.XXXXXX)
cipher=$demo/cipher
plain=$demo/plain
mkdir "$plain"
cleanup() {
    if grep -q " $plain " /proc/mounts; then "$bin" umount "$plain" || fusermount3 -uz "$plain"; fi
}
trap cleanup EXIT

echo "== cofferfs init $cipher   (demo password: 'demo password', default Argon2id)"
echo "demo password" | "$bin" init "$cipher"
"$bin" info "$cipher"

echo
echo "== cofferfs mount $cipher $plain"
echo "demo password" | "$bin" mount "$cipher" "$plain"

mkdir -p "$plain/notes/2026"
echo "Meet at the old oak at noon." > "$plain/notes/2026/plan.txt"
head -c 100000 /dev/urandom > "$plain/random.bin"
ln -s notes/2026/plan.txt "$plain/shortcut"

echo
echo "== the plaintext view (through the mount)"
ls -lR "$plain"
echo "--- cat $plain/shortcut"
cat "$plain/shortcut"

echo
echo "== the ciphertext (what lands on disk and in backups)"
ls -lRa "$cipher"
blob=$(find "$cipher" -type f -size -200c ! -name '.cofferfs.dirid' ! -name 'cofferfs.*' | head -n 1)
echo "--- hexdump of $blob (the encrypted plan.txt)"
od -A d -t x1 "$blob" | head -n 6

echo
echo "== cofferfs umount $plain"
"$bin" umount "$plain"
trap - EXIT
echo "Done. The demo volume stays in $cipher (password: 'demo password');"
echo "mount it again with: echo 'demo password' | $bin mount $cipher $plain"
