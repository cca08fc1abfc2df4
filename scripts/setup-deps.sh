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
#   criu 4.1.1            built from source when no working criu is on PATH (see below)
#   iptables              CRIU runs iptables-restore to lock a network namespace's traffic
#                         while it dumps (any container with its own netns) and iptables-save
#                         to save its rules; without it every such checkpoint fails
set -euo pipefail

packages=(
    busybox-static libseccomp-dev pkg-config gcc libc6-dev git ca-certificates
    procps iproute2 util-linux strace runc crun bats python3 g++ uidmap iptables
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

# CRIU, for `berth checkpoint`/`restore` and tests/checkpoint.rs. Debian bookworm's criu 3.17
# fails `criu check` on kernels from 6.13 (split vvar mapping); 4.1.1 works. When no CRIU on
# PATH passes `criu check`, build 4.1.1 from Debian's orig tarball (trixie's source package;
# the trixie deb-src entry lives in a private apt configuration under the cache, never in
# /etc/apt) and install it as /usr/local/sbin/criu. The built binary is cached, keyed by
# version, so later runs only copy it. See ../shared/notes/criu.md.
CRIU_VERSION=4.1.1
CRIU_CACHE=/var/cache/berth-criu/$CRIU_VERSION
criu_build_deps=(
    make gcc pkg-config libprotobuf-dev libprotobuf-c-dev protobuf-c-compiler protobuf-compiler
    python3-protobuf libnl-3-dev libnet1-dev libcap-dev libbsd-dev uuid-dev libgnutls28-dev
    libnftables-dev xz-utils
)
criu_works() {
    command -v criu >/dev/null 2>&1 && criu check >/dev/null 2>&1
}
criu_debian_uri() {
    # The URI of the machine's main Debian entry (deb822 or one-line format).
    local f uri
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        uri=$(awk 'tolower($1)=="uris:" && $2 ~ /\/debian\/?$/ { print $2; exit }' "$f")
        [ -n "$uri" ] && { echo "$uri"; return; }
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        uri=$(awk '$1 ~ /^deb(-src)?$/ { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\/.*\/debian\/?$/) { print $i; exit } }' "$f")
        [ -n "$uri" ] && { echo "$uri"; return; }
    done
}
criu_build() {
    local src=$CRIU_CACHE/src tarball apt_dir uri
    tarball=$src/criu_$CRIU_VERSION.orig.tar.xz
    mkdir -p "$src"
    if [ ! -f "$tarball" ]; then
        uri=$(criu_debian_uri)
        if [ -z "$uri" ]; then
            echo "setup-deps: criu: no Debian entry in /etc/apt to derive a trixie deb-src from" >&2
            return 1
        fi
        apt_dir=$CRIU_CACHE/apt
        mkdir -p "$apt_dir/lists/partial" "$apt_dir/parts"
        echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri trixie main" \
            >"$apt_dir/sources.list"
        local apt_opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list"
            -o "Dir::Etc::SourceParts=$apt_dir/parts" -o "Dir::State::Lists=$apt_dir/lists")
        echo "setup-deps: criu: fetching criu $CRIU_VERSION source from $uri (trixie deb-src)"
        apt-get "${apt_opts[@]}" update -q
        # apt-get may fail on the .dsc or debian tarball; only the orig tarball matters.
        (cd "$src" && apt-get "${apt_opts[@]}" source --download-only criu) || true
        if [ ! -f "$tarball" ]; then
            echo "setup-deps: criu: $tarball was not downloaded" >&2
            return 1
        fi
    fi
    echo "setup-deps: criu: building $CRIU_VERSION in $src (make -j2 criu)"
    rm -rf "$src/criu-$CRIU_VERSION"
    tar -C "$src" -xJf "$tarball"
    make -C "$src/criu-$CRIU_VERSION" -j2 criu >"$src/build.log" 2>&1 || {
        echo "setup-deps: criu: build failed, see $src/build.log" >&2
        tail -n 20 "$src/build.log" >&2
        return 1
    }
    install -m 0755 "$src/criu-$CRIU_VERSION/criu/criu" "$CRIU_CACHE/criu"
    rm -rf "$src/criu-$CRIU_VERSION"
}
criu_setup() {
    if criu_works; then
        echo "setup-deps: criu: $(command -v criu) passes criu check"
        return 0
    fi
    # The build dependencies also bring the shared libraries a cached binary links against.
    local need=()
    for p in "${criu_build_deps[@]}"; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
            need+=("$p")
        fi
    done
    if [ ${#need[@]} -gt 0 ]; then
        echo "setup-deps: criu: installing build dependencies ${need[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q
        apt-get install -y -q --no-install-recommends "${need[@]}" </dev/null
    fi
    if [ ! -x "$CRIU_CACHE/criu" ]; then
        criu_build || return 1
    else
        echo "setup-deps: criu: using the cached build $CRIU_CACHE/criu"
    fi
    echo "setup-deps: criu: installing /usr/local/sbin/criu ($CRIU_VERSION)"
    install -D -m 0755 "$CRIU_CACHE/criu" /usr/local/sbin/criu
    if ! /usr/local/sbin/criu check >/dev/null 2>&1; then
        echo "setup-deps: criu: /usr/local/sbin/criu check fails on this kernel:" >&2
        /usr/local/sbin/criu check 2>&1 | tail -n 5 >&2 || true
        return 1
    fi
    if [ "$(command -v criu)" != /usr/local/sbin/criu ]; then
        echo "setup-deps: criu: note: $(command -v criu) comes before /usr/local/sbin on PATH" >&2
    fi
    echo "setup-deps: criu: /usr/local/sbin/criu passes criu check"
}
# Not fatal: without CRIU only the checkpoint tests skip (loudly).
criu_setup || echo "setup-deps: criu: no working CRIU; tests/checkpoint.rs will skip" >&2

# The tests' rootfs copies /bin/busybox: make sure it is the static one.
if ! /bin/busybox --list >/dev/null 2>&1; then
    echo "setup-deps: /bin/busybox is missing or broken" >&2
    exit 1
fi
echo "setup-deps: ok"
