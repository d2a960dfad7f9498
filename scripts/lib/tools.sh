# shellcheck shell=bash
# Sourced by the bench and profile scripts: what each of them needs before it measures.
#
# install_missing CMD:PACKAGE...: installs with apt-get the packages whose command is missing.
# cofferfs_bin: prints the absolute path of the cofferfs binary to measure: $COFFERFS_BIN when
# set, else a release build of this checkout (built now).

install_missing() {
    local need=() p
    for p in "$@"; do
        command -v "${p%%:*}" >/dev/null || need+=("${p##*:}")
    done
    if [ ${#need[@]} -gt 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    fi
}

cofferfs_bin() {
    if [ -n "${COFFERFS_BIN:-}" ]; then
        realpath "$COFFERFS_BIN"
    else
        cargo build --release --locked --quiet || return
        realpath "${CARGO_TARGET_DIR:-target}/release/cofferfs"
    fi
}
