#!/usr/bin/env bash
# THE one command that runs every test of Berth (CI runs exactly this, through .ci/run):
#
#   1. dependencies (scripts/setup-deps.sh; quick when everything is installed)
#   2. cargo fmt --check
#   3. cargo clippy --all-targets -D warnings (the whole workspace; and Berth without its
#      default `trace` feature)
#   4. the engine suites in integration/ (containerd, podman, docker, CRI), when present;
#      BERTH_SKIP_ENGINES=1 skips them
#   5. the release binary's hot-path layout still matches src/hot-path.order
#      (bench/hotpath.py --check: a release build, then a traced start)
#   6. the fuzz targets in fuzz/, 30 s each (scripts/fuzz.sh; BERTH_FUZZ_SECONDS changes it,
#      0 skips them)
#   7. cargo test --workspace --all-targets: unit tests, tests/*.rs (the binary on real bundles),
#      conformance/ (OCI runtime-spec), the seccomp crate's tests
#
# Needs root (containers). Debug builds: building in release (LTO, one codegen unit) costs
# more than it saves. The output ends with cargo test's summary lines; the exit status is
# non-zero if any step failed. CARGO_TARGET_DIR is honoured.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

if [ -f "${HOME:-/root}/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "${HOME:-/root}/.cargo/env"
fi
export PATH="${HOME:-/root}/.cargo/bin:$PATH"
export CARGO_TERM_COLOR=never
# Cargo's output directory for the target named in .cargo/config.toml (Berth links statically).
target=${CARGO_TARGET_DIR:-$PWD/target}/x86_64-unknown-linux-gnu

failed=()
step() {
    local name=$1
    shift
    local t0=$SECONDS
    echo "=== $name"
    if "$@"; then
        echo "=== $name: ok ($((SECONDS - t0)) s)"
    else
        echo "=== $name: FAILED ($((SECONDS - t0)) s)"
        failed+=("$name")
    fi
}

if [ "$(id -u)" != 0 ]; then
    echo "scripts/test.sh: the tests create containers and must run as root" >&2
    exit 1
fi

step "dependencies" scripts/setup-deps.sh
if [ ${#failed[@]} -gt 0 ]; then
    exit 1
fi
step "cargo fmt --check" cargo fmt --all -- --check
step "cargo fmt --check (fuzz/)" cargo fmt --manifest-path fuzz/Cargo.toml -- --check
step "cargo clippy" cargo clippy --workspace --all-targets -- -D warnings
# The build without tracing (bench/run.sh --trace-cost measures it) must stay clean too.
step "cargo clippy --no-default-features" cargo clippy --no-default-features -- -D warnings
# Build once up front, so that a build error is reported as such and the engine suites can use
# the binary.
step "cargo build" cargo build --workspace --all-targets

if [ -x integration/run-all.sh ] || [ -f integration/run-all.sh ]; then
    if [ "${BERTH_SKIP_ENGINES:-0}" = 1 ]; then
        echo "=== engine suites: skipped (BERTH_SKIP_ENGINES=1)"
    else
        step "engine suites" env RUNTIME="${RUNTIME:-$target/debug/berth}" \
            bash integration/run-all.sh
    fi
fi

# The benchmark in its smoke mode: it runs and its output parses (timings are never asserted).
step "bench smoke" bash bench/run.sh --smoke --no-install --berth "$target/debug/berth"
step "bench checkpoint smoke" python3 bench/checkpoint.py --smoke --berth "$target/debug/berth"
step "bench growth smoke" python3 bench/growth.py --smoke --berth "$target/debug/berth"
step "bench engines smoke" python3 bench/engines.py --smoke --berth "$target/debug/berth"
# The release binary lays out its start path from src/hot-path.order; a toolchain or
# dependency upgrade renames the functions it lists (bench/hotpath.py says how to refresh it).
step "hot-path order" python3 bench/hotpath.py --check

# Parsing and validation of every input Berth takes (config.json, state.json, --process,
# seccomp profiles, --resources, the command line) under libFuzzer: no panic, hang or memory
# blow-up, every refusal one line naming its field.
fuzz_seconds=${BERTH_FUZZ_SECONDS:-30}
if [ "$fuzz_seconds" = 0 ]; then
    echo "=== fuzz: skipped (BERTH_FUZZ_SECONDS=0)"
else
    step "fuzz (${fuzz_seconds} s per target)" scripts/fuzz.sh --seconds "$fuzz_seconds"
fi

# Last, so that the output ends with its summary lines (nothing is printed after them on
# success). --all-targets leaves out doc-tests, whose "0 passed" summary would otherwise close
# the run.
echo "=== cargo test --workspace (after $SECONDS s)"
log=$(mktemp)
cargo test --workspace --all-targets --no-fail-fast 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
[ "$rc" = 0 ] || failed+=("cargo test")

# One closing line over every test binary (some targets, e.g. examples, run no test).
awk '/^test result:/ { p += $4; f += $6 } END { printf "total: %d passed, %d failed\n", p, f }' "$log"
rm -f "$log"
if [ ${#failed[@]} -gt 0 ]; then
    echo "scripts/test.sh: failed: ${failed[*]}" >&2
    exit 1
fi
