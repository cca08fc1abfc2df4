# shellcheck shell=bash
# Shared harness for the engine suites (sourced, bash).
#
# A suite calls `it_init NAME`, defines `engine_stop` (stops its daemon and whatever it left),
# runs its checks with it_run/it_expect/it_pass/it_fail, and ends with `exit`: an EXIT trap stops
# the engine, checks that nothing was left behind (mounts, cgroups, processes), removes every
# leftover, prints the summary line `N passed, M failed` and sets the exit code.
#
# Environment:
#   RUNTIME        the runtime binary the engines call (default: Berth's release, then debug build)
#   IT_TRACE=1     give the engines a wrapper that logs each runtime call (args, exit code, the
#                  error lines of its --log file) to $W/runtime-calls.log, shown on failures
#   IT_TIMING_RUNS how many `run --rm … echo hi` runs to time (median; default 5, 0 = skip)
#   IT_COMPARE     a second runtime (e.g. /usr/sbin/runc) timed alternately with RUNTIME
#   IT_KEEP=1      keep the suite's temporary directory (daemon logs) after the run
#   IT_TIMES_FILE  append the timing lines to this file too (run-all.sh uses it)

set -u
set -o pipefail

IT_LIB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
IT_DIR=$(dirname "$IT_LIB")
IT_REPO=$(dirname "$IT_DIR")
IT_PASSED=0
IT_FAILED=0
IT_FINISHED=0
OUT=""
RC=0

# Patterns of the host paths a suite may leave mounts on / create cgroups under; set by it_init
# and extended by the suite.
IT_MOUNT_RE=""
IT_CGROUP_RE=""
# cgroups the engine itself creates to hold its containers (not the runtime's): removed at the
# end without being counted as leaks. A regex on the path relative to the controller's mount.
IT_CGROUP_ENGINE_RE='^$'

it_log() { printf '%s\n' "$*" >&2; }

it_pass() {
    IT_PASSED=$((IT_PASSED + 1))
    printf 'PASS %s: %s\n' "$IT_SUITE" "$1"
}

# it_fail NAME [DETAIL…]: counts a failure; details are printed indented (last 40 lines).
it_fail() {
    local name=$1
    shift
    IT_FAILED=$((IT_FAILED + 1))
    printf 'FAIL %s: %s\n' "$IT_SUITE" "$name"
    if [ $# -gt 0 ]; then
        printf '%s\n' "$@" | tail -n 40 | sed 's/^/    | /'
    fi
    it_trace_tail
}

# Shows the runtime calls made since the last failure report (IT_TRACE=1 only).
IT_TRACE_SHOWN=0
it_trace_tail() {
    [ "${IT_TRACE:-0}" = 1 ] || return 0
    local log=$W/runtime-calls.log n
    [ -f "$log" ] || return 0
    n=$(wc -l <"$log")
    if [ "$n" -gt "$IT_TRACE_SHOWN" ]; then
        printf '    runtime calls:\n'
        tail -n +$((IT_TRACE_SHOWN + 1)) "$log" | tail -n 25 | sed 's/^/    > /'
    fi
    IT_TRACE_SHOWN=$n
}

# Marks the trace log as read (calls made so far are not shown with the next failure).
it_trace_mark() {
    [ "${IT_TRACE:-0}" = 1 ] && [ -f "$W/runtime-calls.log" ] &&
        IT_TRACE_SHOWN=$(wc -l <"$W/runtime-calls.log")
    return 0
}

# it_run [-t SECONDS] CMD…: runs CMD with a timeout (default 30 s), stdin from /dev/null;
# sets OUT (stdout+stderr, trailing newlines stripped) and RC.
it_run() {
    local t=30
    if [ "$1" = -t ]; then
        t=$2
        shift 2
    fi
    it_trace_mark
    OUT=$(timeout -k 5 "$t" "$@" </dev/null 2>&1)
    RC=$?
    return 0
}

# it_run_tty COMMAND_LINE: runs the command line (one string, for the shell) on a new
# pseudo-terminal (util-linux `script`), with "go" typed on it; sets OUT and RC like it_run.
# The containers these run start with `read`: they print nothing until the engine has attached
# to their terminal (podman loses what a `run -it` container writes before it attaches).
it_run_tty() {
    it_trace_mark
    OUT=$(printf 'go\n' | timeout -k 5 30 script -qec "$1" /dev/null 2>&1)
    RC=$?
    return 0
}

# it_expect NAME RC REGEX: passes when the last it_run exited RC and its output matches REGEX.
it_expect() {
    local name=$1 want_rc=$2 re=$3
    if [ "$RC" = "$want_rc" ] && [[ $OUT =~ $re ]]; then
        it_pass "$name"
    else
        it_fail "$name" "expected exit $want_rc and output matching /$re/; got exit $RC, output:" "$OUT"
    fi
}

# it_expect_ok NAME: passes when the last it_run exited 0.
it_expect_ok() {
    if [ "$RC" = 0 ]; then
        it_pass "$1"
    else
        it_fail "$1" "exit $RC:" "$OUT"
    fi
}

# it_eq NAME WANT GOT [CONTEXT…]
it_eq() {
    local name=$1 want=$2 got=$3
    shift 3
    if [ "$want" = "$got" ]; then
        it_pass "$name"
    else
        it_fail "$name" "expected '$want', got '$got'" "$@"
    fi
}

# it_wait_for SECONDS CMD…: retries CMD (quietly) every 0.1 s until it succeeds or time runs out.
it_wait_for() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.1
    done
}

# --- packages --------------------------------------------------------------------------------

# it_apt_install PKG…: installs the missing ones, non-interactively; never starts their services.
it_apt_install() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
            missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    it_log "installing: ${missing[*]}"
    local policy=/usr/sbin/policy-rc.d made_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && made_policy=1
    fi
    local rc=0
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q --no-install-recommends "${missing[@]}" >&2; then
        apt-get update -q >&2 &&
            apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 || rc=1
    fi
    [ "$made_policy" = 1 ] && rm -f "$policy"
    return $rc
}

# it_require_packages PKG…: it_apt_install, or the suite ends at once (one failed check).
# Called before it_init.
it_require_packages() {
    it_apt_install "$@" && return 0
    echo "FAIL $(basename "$0" .sh): apt-get install $*"
    echo "0 passed, 1 failed"
    exit 1
}

# --- the runtime -----------------------------------------------------------------------------

it_find_runtime() {
    local c
    if [ -n "${RUNTIME:-}" ]; then
        case $RUNTIME in
        /*) c=$RUNTIME ;;
        */*) c=$(pwd)/$RUNTIME ;;
        *) c=$(command -v "$RUNTIME") || c=$RUNTIME ;;
        esac
        printf '%s\n' "$c"
        return
    fi
    # Cargo builds for the target named in .cargo/config.toml (Berth links statically).
    local out=${CARGO_TARGET_DIR:-$IT_REPO/target}/x86_64-unknown-linux-gnu
    for c in "$out/release/berth" "$out/debug/berth"; do
        [ -x "$c" ] && {
            printf '%s\n' "$c"
            return
        }
    done
    printf '%s\n' "$out/release/berth"
}

# Sets RT_REAL (the runtime binary), RT_NAME (its basename, what podman and the engines call it)
# and RT (what the engines are given: RT_REAL, or a tracing wrapper of the same basename).
it_setup_runtime() {
    RT_REAL=$(it_find_runtime)
    RT_NAME=$(basename "$RT_REAL")
    RT=$RT_REAL
    if [ ! -x "$RT_REAL" ]; then
        it_fail "runtime binary $RT_REAL exists" "build Berth first (cargo build --release) or set RUNTIME=/usr/sbin/runc"
        rm -rf "$W"
        printf '%s passed, %s failed\n' "$IT_PASSED" "$IT_FAILED"
        exit 1
    fi
    CMP=""
    CMP_NAME=""
    if [ -n "${IT_COMPARE:-}" ]; then
        CMP=$(RUNTIME=$IT_COMPARE it_find_runtime)
        CMP_NAME=$(basename "$CMP")
        [ -x "$CMP" ] || { it_log "IT_COMPARE: $CMP is not an executable"; CMP=""; CMP_NAME=""; }
    fi
    if [ "${IT_TRACE:-0}" = 1 ]; then
        mkdir -p "$W/trace"
        RT=$W/trace/$RT_NAME
        # Runs the real runtime as a child (not exec) to log its exit code; stdio is passed
        # through untouched (a container's init inherits it). Afterwards, copies the error lines
        # of the runtime's --log file.
        cat >"$RT" <<EOF
#!/bin/bash
log=$W/runtime-calls.log
args="\$*"
args=\${args//"$W"/'\$W'}
printf '%s [%s] %s\n' "\$(date +%T.%N | cut -c1-12)" "\$\$" "\$args" >>"\$log"
"$RT_REAL" "\$@"
rc=\$?
rtlog=
prev=
for a in "\$@"; do
    [ "\$prev" = --log ] && rtlog=\$a
    case \$a in --log=*) rtlog=\${a#--log=} ;; esac
    prev=\$a
done
printf '%s [%s]   -> exit %s\n' "\$(date +%T.%N | cut -c1-12)" "\$\$" "\$rc" >>"\$log"
if [ "\$rc" != 0 ] && [ -n "\$rtlog" ] && [ -f "\$rtlog" ]; then
    grep -E '"level":"(error|fatal)"|level=(error|fatal)' "\$rtlog" | tail -n 3 | sed 's/^/      log: /' >>"\$log"
fi
exit \$rc
EOF
        chmod +x "$RT"
    fi
}

# --- timing ----------------------------------------------------------------------------------

# it_time LABEL CMD_ARRAY [COMPARE_ARRAY]: runs the command held in the array named CMD_ARRAY
# IT_TIMING_RUNS times (its output must contain "hi") and prints `TIME …: median X s`; with a
# second array (the same command with the IT_COMPARE runtime), alternates the two, run for run,
# so that both see the same load, and prints both medians. Passes/fails "timing: LABEL".
it_time() {
    local label=$1
    local -n cmd_a=$2
    local n=${IT_TIMING_RUNS:-5} i t0 t1 times_a=() times_b=() which
    [ "$n" -gt 0 ] || return 0
    local names=(a)
    [ $# -ge 3 ] && names+=(b)
    for ((i = 0; i < n; i++)); do
        for which in "${names[@]}"; do
            if [ "$which" = a ]; then
                t0=$(date +%s%N)
                OUT=$(timeout -k 5 30 "${cmd_a[@]}" </dev/null 2>&1)
                RC=$?
            else
                local -n cmd_b=$3
                t0=$(date +%s%N)
                OUT=$(timeout -k 5 30 "${cmd_b[@]}" </dev/null 2>&1)
                RC=$?
            fi
            t1=$(date +%s%N)
            if [ "$RC" != 0 ] || [[ $OUT != *hi* ]]; then
                it_fail "timing: $label" "run $((i + 1)) with $([ "$which" = a ] && echo "$RT_NAME" || echo "$CMP_NAME") failed (exit $RC):" "$OUT"
                return 0
            fi
            if [ "$which" = a ]; then times_a+=($(((t1 - t0) / 1000))); else times_b+=($(((t1 - t0) / 1000))); fi
        done
    done
    it_time_report "$label" "$RT_NAME" "$n" "${times_a[@]}"
    [ ${#times_b[@]} -gt 0 ] && it_time_report "$label" "$CMP_NAME" "$n" "${times_b[@]}"
    it_pass "timing: $label"
}

# it_time_report LABEL RUNTIME N MICROSECONDS…: prints (and records) the median.
it_time_report() {
    local label=$1 name=$2 n=$3 med
    shift 3
    med=$(printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {m = (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2; printf "%.3f", m / 1e6}')
    local line="TIME $IT_SUITE: $label with $name: median $med s of $n runs"
    printf '%s\n' "$line"
    [ -n "${IT_TIMES_FILE:-}" ] && printf '%s\n' "$line" >>"$IT_TIMES_FILE"
    return 0
}

# --- images ----------------------------------------------------------------------------------

# it_build_image TAR NAME CONFIG_JSON: writes an image archive holding a busybox-static rootfs,
# readable by `ctr images import`, `podman load` and `docker load` alike: an OCI layout (the
# manifest annotated with the image name) plus a docker-style manifest.json. CONFIG_JSON is the
# image config's "config" object (Env, Cmd, Entrypoint…).
it_build_image() {
    local tar=$1 name=$2 config=$3
    local d
    d=$(mktemp -d "$W/image.XXXXXX")
    local root=$d/rootfs
    mkdir -p "$root"/{bin,dev,etc,proc,sys,tmp,root,run,var/tmp}
    chmod 1777 "$root/tmp" "$root/var/tmp"
    cp /bin/busybox "$root/bin/busybox"
    local a
    for a in $("$root/bin/busybox" --list); do
        [ "$a" = busybox ] || ln -sf busybox "$root/bin/$a"
    done
    ln -s bin "$root/sbin"
    mkdir -p "$root/usr"
    ln -s ../bin "$root/usr/bin"
    ln -s ../bin "$root/usr/sbin"
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
    : >"$root/etc/hostname"
    : >"$root/etc/hosts"
    : >"$root/etc/resolv.conf"

    local blobs=$d/oci/blobs/sha256
    mkdir -p "$blobs"
    tar --numeric-owner --owner=0 --group=0 --sort=name -C "$root" -cf "$d/layer.tar" .
    local layer_sha layer_size
    layer_sha=$(sha256sum "$d/layer.tar" | cut -d' ' -f1)
    layer_size=$(stat -c %s "$d/layer.tar")
    mv "$d/layer.tar" "$blobs/$layer_sha"

    printf '{"architecture":"amd64","os":"linux","created":"2024-01-01T00:00:00Z","config":%s,"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
        "$config" "$layer_sha" >"$d/config.json"
    local cfg_sha cfg_size
    cfg_sha=$(sha256sum "$d/config.json" | cut -d' ' -f1)
    cfg_size=$(stat -c %s "$d/config.json")
    mv "$d/config.json" "$blobs/$cfg_sha"

    printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' \
        "$cfg_sha" "$cfg_size" "$layer_sha" "$layer_size" >"$d/manifest"
    local man_sha man_size
    man_sha=$(sha256sum "$d/manifest" | cut -d' ' -f1)
    man_size=$(stat -c %s "$d/manifest")
    mv "$d/manifest" "$blobs/$man_sha"

    printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}' \
        "$man_sha" "$man_size" "$name" "${name##*:}" >"$d/oci/index.json"
    printf '{"imageLayoutVersion":"1.0.0"}' >"$d/oci/oci-layout"
    printf '[{"Config":"blobs/sha256/%s","RepoTags":["%s"],"Layers":["blobs/sha256/%s"]}]' \
        "$cfg_sha" "$name" "$layer_sha" >"$d/oci/manifest.json"
    tar --numeric-owner --owner=0 --group=0 -C "$d/oci" -cf "$tar" oci-layout index.json manifest.json blobs
    rm -rf "$d"
}

# A busybox image whose default command is `sh`.
# shellcheck disable=SC2034 # used by the suites
IT_BUSYBOX_CONFIG='{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["sh"]}'

# --- container helpers -----------------------------------------------------------------------

# it_cgroup_file PID CONTROLLER FILE: prints the host path of FILE in PID's v1 cgroup CONTROLLER.
it_cgroup_file() {
    local pid=$1 ctl=$2 file=$3 path
    if [ -z "$pid" ] || [ "$pid" = 0 ] || [ ! -r "/proc/$pid/cgroup" ]; then
        printf 'no process %s\n' "${pid:-(none)}"
        return
    fi
    path=$(awk -F: -v c="$ctl" '{n = split($2, a, ","); for (i = 1; i <= n; i++) if (a[i] == c) print $3}' "/proc/$pid/cgroup")
    printf '/sys/fs/cgroup/%s%s/%s\n' "$ctl" "$path" "$file"
}

# it_cgroup_read PID CONTROLLER FILE: the file's content (or "missing: PATH").
it_cgroup_read() {
    local f
    f=$(it_cgroup_file "$@")
    case $f in
    /*) cat "$f" 2>/dev/null || printf 'missing: %s\n' "$f" ;;
    *) printf '%s\n' "$f" ;;
    esac
}

# it_handles PID SIGNAL_NUMBER: true once PID has a handler for the signal (its SigCgt mask):
# a container's shell may not have run its `trap` yet when the engine says it started, and
# pid 1 ignores a signal it has no handler for.
it_handles() {
    local mask
    mask=$(awk '$1 == "SigCgt:" {print $2}' "/proc/$1/status" 2>/dev/null) || return 1
    [ -n "$mask" ] && (((0x$mask >> ($2 - 1)) & 1))
}

# it_expect_frozen NAME STATUS WANT_STATUS PID WANT_FREEZER: passes when the engine reports
# WANT_STATUS and PID's freezer cgroup is in WANT_FREEZER (FROZEN or THAWED).
it_expect_frozen() {
    local name=$1 st=$2 want_st=$3 pid=$4 want_fz=$5 fz
    fz=$(it_cgroup_read "$pid" freezer freezer.state)
    if [ "$st" = "$want_st" ] && [ "$fz" = "$want_fz" ]; then
        it_pass "$name"
    else
        it_fail "$name" "status '$st', freezer.state '$fz'"
    fi
}

# it_expect_limits PREFIX PID: PID's cgroups hold a 64 MiB memory limit, 50 pids and half a CPU
# (what the suites ask for with --memory 64m --pids-limit 50 --cpus 0.5).
it_expect_limits() {
    local prefix=$1 pid=$2
    it_eq "$prefix--memory: memory.limit_in_bytes" 67108864 "$(it_cgroup_read "$pid" memory memory.limit_in_bytes)"
    it_eq "$prefix--pids-limit: pids.max" 50 "$(it_cgroup_read "$pid" pids pids.max)"
    it_eq "$prefix--cpus: cpu.cfs_quota_us/cpu.cfs_period_us" "50000/100000" \
        "$(it_cgroup_read "$pid" cpu cpu.cfs_quota_us)/$(it_cgroup_read "$pid" cpu cpu.cfs_period_us)"
}

# --- daemons ---------------------------------------------------------------------------------

# it_daemon VAR LOG CMD…: starts CMD in the background (its own session, so that a terminal's
# signals don't reach it), output to LOG; stores its pid in VAR.
it_daemon() {
    local var=$1 log=$2
    shift 2
    setsid "$@" </dev/null >>"$log" 2>&1 &
    printf -v "$var" '%s' "$!"
}

# it_stop_daemon PID [SECONDS]: SIGTERM, then SIGKILL after SECONDS (default 15); waits for it.
it_stop_daemon() {
    local pid=$1 t=${2:-15} i
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null
    for ((i = 0; i < t * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    return 0
}

# it_watch_dir DIR [engine]: entries that appear in DIR during the suite are reported as left
# behind (unless "engine" says the engine itself leaves them there) and removed at the end (e.g.
# containerd's shim sockets in /run/containerd/s); so are DIR and its parents, when they did not
# exist before and are left empty.
IT_WATCHED=()
IT_ENGINE_FILES=()
IT_MADE_DIRS=()
it_watch_dir() {
    local d=$1
    if [ "${2:-}" = engine ]; then IT_ENGINE_FILES+=("$d"); else IT_WATCHED+=("$d"); fi
    ls -A "$d" 2>/dev/null | sort >"$W/.watch.$(printf '%s' "$d" | tr / _)"
    while [ "$d" != / ] && [ ! -e "$d" ]; do
        IT_MADE_DIRS+=("$d")
        d=$(dirname "$d")
    done
}

# --- containerd ------------------------------------------------------------------------------

# it_containerd_toml DIR [cri]: a containerd 1.6 config whose root, state, sockets and opt
# directory are all under DIR; the CRI plugin is disabled unless "cri" is given. Writes to
# stdout; the caller may append more tables (e.g. the CRI plugin's).
it_containerd_toml() {
    local dir=$1 cri='"io.containerd.grpc.v1.cri",'
    [ "${2:-}" = cri ] && cri=""
    cat <<EOF
version = 2
root = "$dir/root"
state = "$dir/state"
disabled_plugins = [
  $cri
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]
[grpc]
  address = "$dir/containerd.sock"
[ttrpc]
  address = "$dir/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$dir/opt"
EOF
}

# it_ctr_remove_all CTR_CMD…: kills and removes every task and container `CTR_CMD` (ctr with
# its address and namespace) lists; for a suite's clean-up.
it_ctr_remove_all() {
    local c
    for c in $("$@" tasks ls -q 2>/dev/null); do
        timeout 20 "$@" tasks kill -a -s KILL "$c" >/dev/null 2>&1
        timeout 20 "$@" tasks rm -f "$c" >/dev/null 2>&1
    done
    for c in $("$@" containers ls -q 2>/dev/null); do
        timeout 20 "$@" containers rm "$c" >/dev/null 2>&1
    done
}

# it_containerd_start VAR CONFIG LOG SOCKET: starts containerd (pid in VAR); waits for its socket.
it_containerd_start() {
    local var=$1 config=$2 log=$3 sock=$4
    # containerd-shim-runc-v2 puts its sockets here whatever the config says.
    it_watch_dir /run/containerd/s
    # When the shim cleans up after a task whose bundle is already gone, it runs the runtime's
    # `delete --force` with the default root (/run/containerd/runc/NAMESPACE), which runc
    # creates.
    it_watch_dir /run/containerd/runc engine
    it_daemon "$var" "$log" containerd --config "$config"
    if it_wait_for 30 ctr -a "$sock" version; then
        it_pass "containerd starts"
    else
        it_fail "containerd starts" "$(tail -n 20 "$log")"
        return 1
    fi
}

# --- setup and teardown ----------------------------------------------------------------------

it_mounts() { awk '{print $5}' /proc/self/mountinfo | sort -u; }
it_cgroups() { find /sys/fs/cgroup -mindepth 2 -type d 2>/dev/null | sort; }

# it_init SUITE: root check, temporary directory W, runtime, snapshots, the EXIT trap.
it_init() {
    IT_SUITE=$1
    if [ "$(id -u)" != 0 ]; then
        echo "the $IT_SUITE suite needs root" >&2
        echo "0 passed, 1 failed"
        exit 1
    fi
    W=$(mktemp -d "/tmp/berth-it-$IT_SUITE.XXXXXX")
    chmod 711 "$W"
    IT_MOUNT_RE="^$W(/|$)"
    IT_CGROUP_RE='^$'
    it_setup_runtime
    trap it_finish EXIT
    trap 'exit 130' INT TERM HUP
    it_mounts >"$W/.mounts.before"
    it_cgroups >"$W/.cgroups.before"
    printf '== %s suite: runtime %s (%s), work dir %s\n' "$IT_SUITE" "$RT_REAL" \
        "$("$RT_REAL" --version 2>/dev/null | head -n1)" "$W"
}

# Processes whose command line names the work directory (daemons, shims, conmon…).
it_leftover_pids() {
    local p
    for p in /proc/[0-9]*; do
        [ "${p#/proc/}" = $$ ] && continue
        tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -qF "$W" && printf '%s\n' "${p#/proc/}"
    done
    return 0
}

# Kills PIDs and waits (up to 5 s) for them to go.
it_kill_pids() {
    [ $# -gt 0 ] || return 0
    kill -9 "$@" 2>/dev/null
    local i
    for ((i = 0; i < 50; i++)); do
        kill -0 "$@" 2>/dev/null || return 0
        sleep 0.1
    done
}

# it_umount_under REGEX: unmounts every mount point matching REGEX, deepest first.
it_umount_under() {
    local m
    it_mounts | grep -E "$1" | sort -r | while read -r m; do
        umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
    done
}

it_finish() {
    local rc=$?
    [ "$IT_FINISHED" = 1 ] && return
    IT_FINISHED=1
    set +e
    if declare -F engine_stop >/dev/null; then
        engine_stop
    fi

    # What the suite left behind: counted as failures, then removed.
    local pids mounts cgroups
    pids=$(it_leftover_pids)
    mounts=$(it_mounts | comm -13 "$W/.mounts.before" - | grep -E "$IT_MOUNT_RE")
    cgroups=$(it_cgroups | comm -13 "$W/.cgroups.before" - | grep -E "$IT_CGROUP_RE")
    local leaked_cg="" c rel
    for c in $cgroups; do
        rel=${c#/sys/fs/cgroup/*/}
        [[ /$rel =~ $IT_CGROUP_ENGINE_RE ]] || leaked_cg+="${leaked_cg:+$'\n'}$c"
    done
    local d new files="" engine_files=""
    for d in "${IT_WATCHED[@]}" "${IT_ENGINE_FILES[@]}"; do
        new=$(ls -A "$d" 2>/dev/null | sort | comm -13 "$W/.watch.$(printf '%s' "$d" | tr / _)" -)
        for c in $new; do
            if [[ " ${IT_ENGINE_FILES[*]} " == *" $d "* ]]; then
                engine_files+="${engine_files:+$'\n'}$d/$c"
            else
                files+="${files:+$'\n'}$d/$c"
            fi
        done
    done
    if [ -z "$pids" ]; then it_pass "cleanup: no processes left"; else
        it_fail "cleanup: no processes left" "$(for p in $pids; do printf '%s: %s\n' "$p" "$(tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline")"; done)"
    fi
    # shellcheck disable=SC2086
    it_kill_pids $pids
    if [ -z "$mounts" ]; then it_pass "cleanup: no mounts left"; else
        it_fail "cleanup: no mounts left" "$mounts"
    fi
    it_umount_under "$IT_MOUNT_RE"
    if [ ${#IT_WATCHED[@]} -gt 0 ]; then
        if [ -z "$files" ]; then it_pass "cleanup: no files left"; else
            it_fail "cleanup: no files left" "$files"
        fi
    fi
    if [ ${#IT_WATCHED[@]} -gt 0 ] || [ ${#IT_ENGINE_FILES[@]} -gt 0 ]; then
        for c in $files $engine_files; do rm -rf "$c"; done
        printf '%s\n' "${IT_MADE_DIRS[@]}" | sort -ru | while read -r d; do
            [ -n "$d" ] && rmdir "$d" 2>/dev/null
        done
    fi
    if [ -z "$leaked_cg" ]; then it_pass "cleanup: no cgroups left"; else
        # One line per cgroup path, with the hierarchies it is left in.
        it_fail "cleanup: no cgroups left" "$(printf '%s\n' "$leaked_cg" |
            sed -E 's|^/sys/fs/cgroup/([^/]+)(/.*)$|\2 \1|' |
            awk '{h[$1] = h[$1] (h[$1] ? "," : "") $2} END {for (p in h) print p " (" h[p] ")"}' | sort)"
    fi
    # Remove the new cgroups (the engine's own and any leaked), deepest first, killing what
    # is still in them.
    for c in $(printf '%s\n' $cgroups | sort -r); do
        # shellcheck disable=SC2046
        it_kill_pids $(cat "$c/cgroup.procs" 2>/dev/null)
        [ -f "$c/freezer.state" ] && echo THAWED >"$c/freezer.state" 2>/dev/null
        rmdir "$c" 2>/dev/null
    done
    if [ "${IT_KEEP:-0}" = 1 ]; then
        it_log "kept $W"
    else
        rm -rf "$W"
    fi
    if [ "$rc" != 0 ] && [ "$IT_FAILED" = 0 ]; then
        it_fail "suite ran to its end" "it exited with status $rc"
    fi
    printf '%s passed, %s failed\n' "$IT_PASSED" "$IT_FAILED"
    if [ "$IT_FAILED" -gt 0 ]; then exit 1; fi
    exit 0
}
