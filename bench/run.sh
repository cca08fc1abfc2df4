#!/usr/bin/env bash
# bench/run.sh — Berth against runc, crun and youki, side by side (see bench/README.md).
#
#   sudo bench/run.sh                 # full run: installs the peers, builds Berth (release)
#   sudo bench/run.sh --quick         # fewer iterations
#   sudo bench/run.sh --smoke         # 2 iterations, installs nothing, skips missing peers;
#                                     # checks that the output parses (for CI; never asserts timings)
#   sudo bench/run.sh --runs 50 --only berth,crun --readme
#   sudo bench/run.sh --trace-cost    # also a build without the `trace` feature, as rows
#                                     # `notrace` and `notrace-ro`: what tracing costs when off
#
# Options: --smoke, --quick, --runs N, --only LIST, --berth PATH (skip the build),
# --trace-cost, --no-install, --readme (write the table into bench/README.md); anything else goes to
# bench/bench.py (see `python3 bench/bench.py --help`), e.g. --profile (strace -f -c per
# command) or --extra NAME=PATH (another Berth build to compare).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
TOOLS="$HERE/.tools"
YOUKI_VERSION=0.7.0

smoke=0 quick=0 install=1 berth="" only="" trace_cost=0
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --smoke) smoke=1 ;;
        --quick) quick=1 ;;
        --no-install) install=0 ;;
        --trace-cost) trace_cost=1 ;;
        --berth) berth="$2"; shift ;;
        --berth=*) berth="${1#*=}" ;;
        --only) only="$2"; args+=(--only "$2"); shift ;;
        --only=*) only="${1#*=}"; args+=("$1") ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) args+=("$1") ;;
    esac
    shift
done

say() { echo "[bench] $*" >&2; }

if [ "$(id -u)" != 0 ]; then
    echo "bench/run.sh: run as root (containers, mount namespaces): sudo $0" >&2
    exit 2
fi

wanted() { # wanted RUNTIME: true when --only is empty or names it
    [ -z "$only" ] && return 0
    case ",$only," in *",$1,"*|*",$1-"*) return 0 ;; esac
    return 1
}

# --- the peers ----------------------------------------------------------------------------
if [ "$smoke" = 1 ]; then
    install=0
fi
if [ "$install" = 1 ]; then
    pkgs=()
    command -v runc >/dev/null || pkgs+=(runc)
    command -v crun >/dev/null || pkgs+=(crun)
    [ -x /bin/busybox ] || pkgs+=(busybox-static)
    dpkg -s libseccomp-dev >/dev/null 2>&1 || pkgs+=(libseccomp-dev)
    command -v pkg-config >/dev/null || pkgs+=(pkg-config)
    command -v strace >/dev/null || pkgs+=(strace)
    if [ ${#pkgs[@]} -gt 0 ]; then
        say "apt-get install ${pkgs[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
    fi
fi
[ -x /bin/busybox ] || { echo "bench/run.sh: /bin/busybox is missing (apt-get install busybox-static)" >&2; exit 2; }

youki="$TOOLS/bin/youki"
if wanted youki; then
    if [ -x "$youki" ] && [[ "$("$youki" --version 2>/dev/null)" == *"version: $YOUKI_VERSION"* ]]; then
        :
    elif [ "$install" = 1 ]; then
        # Without v1,v2 youki has no cgroup support at all; seccomp needs libseccomp-dev.
        say "cargo install youki $YOUKI_VERSION into $TOOLS (takes several minutes)"
        CARGO_TARGET_DIR="$TOOLS/build" cargo install youki --version "$YOUKI_VERSION" --locked \
            --features v1,v2,seccomp --root "$TOOLS"
        rm -rf "$TOOLS/build"
    else
        say "youki: not installed ($youki): skipped"
    fi
fi
[ -x "$youki" ] || youki=""

# --- Berth --------------------------------------------------------------------------------
# Cargo's output directory for the target named in .cargo/config.toml (Berth links statically).
target="${CARGO_TARGET_DIR:-$REPO/target}/x86_64-unknown-linux-gnu"
if [ -z "$berth" ]; then
    if [ "$smoke" = 1 ]; then
        # Timings do not matter here: any build will do, the release one if it is there.
        for b in "$target/release/berth" "$target/debug/berth"; do
            [ -x "$b" ] && { berth="$b"; break; }
        done
        if [ -z "$berth" ]; then
            (cd "$REPO" && cargo build --quiet)
            berth="$target/debug/berth"
        fi
    else
        say "cargo build --release"
        (cd "$REPO" && cargo build --release --quiet)
        berth="$target/release/berth"
    fi
fi

# The same source without tracing compiled in, in a target directory of its own (sharing
# one, cargo would take either build's binary for the other's).
if [ "$trace_cost" = 1 ]; then
    notrace_dir="$REPO/target/notrace"
    say "cargo build --release --no-default-features (into $notrace_dir)"
    (cd "$REPO" && CARGO_TARGET_DIR="$notrace_dir" cargo build --release --quiet --no-default-features)
    args+=(--extra "notrace=$notrace_dir/x86_64-unknown-linux-gnu/release/berth")
fi

# --- run ----------------------------------------------------------------------------------
opts=(--berth "$berth")
[ -n "$youki" ] && opts+=(--youki "$youki")
if [ "$smoke" = 1 ]; then
    out="$(mktemp -d /tmp/berth-bench-smoke.XXXXXX)"
    trap 'rm -rf "$out"' EXIT
    opts+=(--runs 2 --warmup 1 --batch 4 --batch-rounds 1 --timeout 20 --check
           --json "$out/smoke.json" --markdown "$out/smoke.md")
elif [ "$quick" = 1 ]; then
    opts+=(--runs 10 --warmup 1 --batch-rounds 1)
fi
python3 "$HERE/bench.py" "${opts[@]}" "${args[@]}"
