#!/usr/bin/env bash
# Runs the engine suites one after the other and adds up their results.
#
#   ENGINES="containerd podman docker cri systemd podman-rootless"   which suites, in this
#                                            order (default: all six; spaces or commas)
#   RUNTIME=/usr/sbin/runc                   the runtime binary (default: Berth's build)
#   IT_SUITE_TIMEOUT=900                     seconds one suite may take before it is stopped
#   IT_TIMING_RUNS, IT_COMPARE, IT_TRACE, IT_KEEP   see lib/common.sh
#
# Prints every suite's lines, the timing lines again at the end, and a last line
# `N passed, M failed`; exits non-zero if any check failed or a suite did not finish.
set -u
here=$(cd "$(dirname "$0")" && pwd)
engines=${ENGINES:-containerd podman docker cri systemd podman-rootless}
engines=${engines//,/ }

passed=0
failed=0
times=$(mktemp /tmp/berth-it-times.XXXXXX)
trap 'rm -f "$times"' EXIT
export IT_TIMES_FILE=$times

for e in $engines; do
    suite=$here/$e.sh
    if [[ ! $e =~ ^(containerd|podman|docker|cri|systemd|podman-rootless)$ ]] || [ ! -f "$suite" ]; then
        echo "FAIL run-all: no suite named '$e' (known: containerd podman docker cri systemd podman-rootless)"
        failed=$((failed + 1))
        continue
    fi
    t0=$SECONDS
    out=$(mktemp /tmp/berth-it-out.XXXXXX)
    # A suite that overruns is stopped with SIGTERM; its trap still cleans up.
    timeout -k 120 "${IT_SUITE_TIMEOUT:-900}" bash "$suite" 2>&1 | tee "$out"
    rc=${PIPESTATUS[0]}
    summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$out" | tail -n 1)
    rm -f "$out"
    if [ -z "$summary" ]; then
        echo "FAIL run-all: the $e suite ended without a summary (exit $rc)"
        failed=$((failed + 1))
        continue
    fi
    p=${summary%% passed*}
    f=${summary#*, }
    f=${f%% failed}
    passed=$((passed + p))
    failed=$((failed + f))
    if [ "$rc" != 0 ] && [ "$f" = 0 ]; then
        echo "FAIL run-all: the $e suite exited $rc"
        failed=$((failed + 1))
    fi
    echo "== $e: $summary in $((SECONDS - t0)) s"
done

if [ -s "$times" ]; then
    echo "== timings"
    cat "$times"
fi
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
