#!/usr/bin/env bash
# Runs Berth's fuzz targets (fuzz/, cargo-fuzz + libFuzzer) and fails if any of them finds a
# panic, a hang (-timeout) or an input that takes more memory than allowed (-rss_limit_mb).
#
#   scripts/fuzz.sh [--seconds N] [--runs N] [TARGET...]
#
# Defaults: every target (cargo fuzz list), 30 s each. --runs N stops a target after N
# executions instead (the long run: fuzz/README.md). Each target starts from its seeds in
# fuzz/corpus/TARGET (what it finds is added there, untracked) and fuzz/regressions/TARGET.
# A failing input is saved in fuzz/artifacts/TARGET/.
#
# Stable Rust: RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its nightly-only flags. No sanitizer
# (-s none): the code under test is safe Rust and libseccomp, which is not instrumented anyway;
# without AddressSanitizer it runs about 7 times faster. Debug assertions and overflow checks
# are on (cargo-fuzz's default).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

seconds=30
runs=
targets=()
while [ $# -gt 0 ]; do
    case $1 in
        --seconds) seconds=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) targets+=("$1"); shift ;;
    esac
done

if [ -f "${HOME:-/root}/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "${HOME:-/root}/.cargo/env"
fi
export RUSTC_BOOTSTRAP=1
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "scripts/fuzz.sh: cargo-fuzz is missing (scripts/setup-deps.sh installs it)" >&2
    exit 1
fi
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list)
fi

# Built once; the targets' binaries are then run directly (`cargo fuzz run` would run cargo
# again for each one).
cargo fuzz build -s none || exit 1
bin=${CARGO_TARGET_DIR:-fuzz/target}/x86_64-unknown-linux-gnu/release

failed=()
for t in "${targets[@]}"; do
    dirs=("fuzz/corpus/$t")
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
    [ -d "fuzz/regressions/$t" ] && dirs+=("fuzz/regressions/$t")
    limit=(-max_total_time="$seconds")
    [ -n "$runs" ] && limit=(-runs="$runs")
    log=$(mktemp)
    t0=$SECONDS
    # -max_len: the seeds are up to ~8 KB (docker's and podman's seccomp profiles in a config).
    "$bin/$t" "${limit[@]}" -timeout=10 -rss_limit_mb=512 -max_len=65536 \
        -print_final_stats=1 -close_fd_mask=1 -artifact_prefix="fuzz/artifacts/$t/" \
        "${dirs[@]}" >"$log" 2>&1
    rc=$?
    execs=$(awk '/stat::number_of_executed_units/ { print $2 }' "$log")
    rss=$(awk '/stat::peak_rss_mb/ { print $2 }' "$log")
    echo "fuzz $t: ${execs:-?} executions in $((SECONDS - t0)) s, peak RSS ${rss:-?} MB, exit $rc"
    if [ "$rc" != 0 ]; then
        # The report: the panic message, its place, and the saved input.
        grep -E -A3 "panicked at|ERROR: libFuzzer|SUMMARY|Test unit written|Base64" "$log" | head -40
        failed+=("$t")
    fi
    rm -f "$log"
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "scripts/fuzz.sh: failed: ${failed[*]}" >&2
    exit 1
fi
