#!/usr/bin/env bash
# Installs everything Berth's build and tests need on a fresh Debian bookworm machine, as root.
# Idempotent: when every package is already installed it changes nothing (and skips the
# `apt-get update`). The Rust toolchain itself (rustup, cargo) is expected to be present.
#
#   busybox-static        the tests' container root filesystems (/bin/busybox)
#   libseccomp-dev        the seccomp crate links libseccomp statically (libseccomp.a)
#   pkg-config gcc libc6-dev   building the -sys crates
#   git                   build.rs records the commit for `berth --version`
#   procps iproute2 util-linux strace   tools the tests and their diagnostics use (ps, ip, …)
#   runc crun             reference runtimes (BERTH_TEST_RUNTIME=/usr/sbin/runc compares)
#   bats                  shell test runner used by some suites
#   python3               the benchmark driver (bench/bench.py; CI runs its smoke mode)
#   uidmap                newuidmap/newgidmap: multi-range id maps of rootless containers
#   g++                   libfuzzer-sys builds libFuzzer (C++) for the fuzz targets in fuzz/
#   cargo-fuzz            (from crates.io, once) runs them: scripts/fuzz.sh
set -euo pipefail

packages=(
    busybox-static libseccomp-dev pkg-config gcc libc6-dev git ca-certificates
    procps iproute2 util-linux strace runc crun bats python3 g++ uidmap
)

if [ "$(id -u)" != 0 ]; then
    echo "setup-deps: must run as root" >&2
    exit 1
fi

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

if [ ${#missing[@]} -gt 0 ]; then
    echo "setup-deps: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null
fi

# Rust: rustfmt and clippy are needed by scripts/test.sh.
if [ -f "${HOME:-/root}/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "${HOME:-/root}/.cargo/env"
fi
for c in rustfmt clippy; do
    bin=$c
    [ "$c" = clippy ] && bin=cargo-clippy
    if ! command -v "$bin" >/dev/null 2>&1; then
        echo "setup-deps: adding the $c component"
        rustup component add "$c" || echo "setup-deps: could not add $c" >&2
    fi
done

# cargo-fuzz, for scripts/fuzz.sh: built from crates.io once (a few minutes), then kept in
# ~/.cargo/bin. The version is pinned so that CI builds what was tested.
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "setup-deps: installing cargo-fuzz"
    cargo install --locked --version 0.13.2 cargo-fuzz
fi

# The tests' rootfs copies /bin/busybox: make sure it is the static one.
if ! /bin/busybox --list >/dev/null 2>&1; then
    echo "setup-deps: /bin/busybox is missing or broken" >&2
    exit 1
fi
echo "setup-deps: ok"
