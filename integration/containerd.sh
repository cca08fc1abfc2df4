#!/usr/bin/env bash
# containerd 1.6 + containerd-shim-runc-v2, driven by `ctr`, with the runtime under test as the
# shim's runc binary (`ctr run --runc-binary`). See lib/common.sh for the environment it reads.
set -u
. "$(dirname "$0")/lib/common.sh"

it_require_packages containerd busybox-static
it_init containerd
# containerd makes a checkpoint's scratch directory (ctrd-checkpoint*) in the temporary
# directory and leaves it there: in the work directory, it goes with the suite.
export TMPDIR=$W/tmp
mkdir -p "$TMPDIR"

NS=berth-it-ctr
IMG=localhost/berth-it/busybox:latest
SOCK=$W/containerd.sock
RROOT=$W/runtime-root
# ctr's default cgroupsPath is /NAMESPACE/ID; the namespace's directory is containerd's own.
IT_CGROUP_RE="/$NS(/|$)"
IT_CGROUP_ENGINE_RE="^/$NS$"
it_watch_dir /run/containerd/fifo

CTRD_PID=""
engine_stop() {
    # Remove whatever containers are left (tasks first), then stop the daemon.
    if [ -n "$CTRD_PID" ] && kill -0 "$CTRD_PID" 2>/dev/null; then
        it_ctr_remove_all "${CTR[@]}"
        timeout 20 "${CTR[@]}" images rm "$IMG" >/dev/null 2>&1
    fi
    it_stop_daemon "$CTRD_PID"
}

CTR=(ctr -a "$SOCK" -n "$NS")
# ctr run with the runtime under test.
CRUN=("${CTR[@]}" run --runc-binary "$RT" --runc-root "$RROOT" --fifo-dir "$W/fifo")
CEXEC=("${CTR[@]}" tasks exec --fifo-dir "$W/fifo")
ctr_() { "${CTR[@]}" "$@"; }
# task_field ID COLUMN: a column of `ctr tasks ls` (2: pid, 3: status).
task_field() { ctr_ tasks ls 2>/dev/null | awk -v id="$1" -v c="$2" '$1 == id {print $c}'; }
task_is() { [ "$(task_field "$1" 3)" = "$2" ]; }
# kill_rm ID: SIGKILL a detached task, wait for it to stop, remove task and container.
kill_rm() {
    timeout 20 "${CTR[@]}" tasks kill -s KILL "$1" >/dev/null 2>&1
    it_wait_for 10 task_is "$1" STOPPED
    timeout 20 "${CTR[@]}" tasks rm "$1" >/dev/null 2>&1
    timeout 20 "${CTR[@]}" containers rm "$1" >/dev/null 2>&1
}

mkdir -p "$RROOT"
it_containerd_toml "$W" >"$W/containerd.toml"
it_containerd_start CTRD_PID "$W/containerd.toml" "$W/containerd.log" "$SOCK" || exit 1

it_build_image "$W/busybox.tar" "$IMG" "$IT_BUSYBOX_CONFIG"
it_run "${CTR[@]}" images import "$W/busybox.tar"
it_expect_ok "image import"
[ "$RC" = 0 ] || exit 1

# -- a short container: its output and exit code
it_run "${CRUN[@]}" --rm "$IMG" c-short sh -c 'echo hello; exit 3'
it_expect "run: output and exit code" 3 '^hello$'

# -- a detached container: exec, ps, pause/resume, kill, delete
it_run "${CRUN[@]}" -d "$IMG" c-bg sleep 600
it_expect_ok "run -d"
pid=$(task_field c-bg 2)
if [ -n "$pid" ] && [ -d "/proc/$pid" ]; then
    it_pass "task ls: the task has a live pid"
else
    it_fail "task ls: the task has a live pid" "$(ctr_ tasks ls 2>&1)"
fi

it_run "${CEXEC[@]}" --exec-id e1 c-bg sh -c 'echo exec output; exit 5'
it_expect "task exec: output and exit code" 5 '^exec output$'

it_run "${CEXEC[@]}" --exec-id e2 c-bg sh -c 'cat /proc/1/cmdline | tr "\0" " "'
it_expect "task exec: sees the container's pid 1" 0 '^sleep 600 ?$'

it_run "${CTR[@]}" tasks ps c-bg
it_expect "task ps lists the init" 0 "(^|[[:space:]])${pid:-none}[[:space:]]"

it_run "${CTR[@]}" tasks pause c-bg
it_expect_ok "task pause"
st=$(task_field c-bg 3)
it_expect_frozen "task pause: status PAUSED, cgroup FROZEN" "$st" PAUSED "${pid:-0}" FROZEN
it_run "${CTR[@]}" tasks resume c-bg
it_expect_ok "task resume"
st=$(task_field c-bg 3)
it_expect_frozen "task resume: status RUNNING, cgroup THAWED" "$st" RUNNING "${pid:-0}" THAWED
it_run "${CEXEC[@]}" --exec-id e3 c-bg true
it_expect_ok "task exec after resume"

cg_mem=$(it_cgroup_file "${pid:-0}" memory "")
it_run "${CTR[@]}" tasks kill -s KILL c-bg
it_expect_ok "task kill -s KILL"
if [ "$RC" = 0 ] && it_wait_for 10 task_is c-bg STOPPED; then
    it_pass "task kill: the task stops"
else
    it_fail "task kill: the task stops" "$(ctr_ tasks ls 2>&1)"
fi
it_run "${CTR[@]}" tasks delete c-bg
it_expect_ok "task delete"
it_run "${CTR[@]}" containers delete c-bg
it_expect_ok "container delete"
if [[ $cg_mem != /* ]] || [ -e "$RROOT/$NS/c-bg" ] || [ -e "$RROOT/c-bg" ] || [ -d "$cg_mem" ]; then
    it_fail "delete removes the runtime's state and cgroup" "$(ls -la "$RROOT" "$RROOT/$NS" 2>&1; ls -d "$cg_mem" 2>&1)"
else
    it_pass "delete removes the runtime's state and cgroup"
fi

# -- SIGTERM reaches a foreground container's handler, whose exit code ctr returns
"${CRUN[@]}" --rm "$IMG" c-term sh -c 'trap "exit 7" TERM; echo ready; sleep 600 & wait' \
    </dev/null >"$W/c-term.out" 2>&1 &
fg=$!
ready() { grep -q ready "$W/c-term.out" || ! kill -0 "$fg" 2>/dev/null; }
it_wait_for 20 ready
it_run "${CTR[@]}" tasks kill c-term
timeout 20 tail --pid="$fg" -f /dev/null
wait "$fg"
RC=$?
OUT=$(cat "$W/c-term.out")
it_expect "task kill (SIGTERM): the handler's exit code" 7 'ready'

# -- a tty
it_run_tty "${CRUN[*]} --rm -t $IMG c-tty sh -c 'read x; tty; stty size; exit 4'"
it_expect "run -t: a terminal, exit code" 4 '/dev/pts/[0-9]+'

# -- memory limit, in the container's cgroup
it_run "${CRUN[@]}" -d --memory-limit 67108864 "$IMG" c-mem2 sleep 600
pid=$(task_field c-mem2 2)
it_eq "run --memory-limit: memory.limit_in_bytes in the cgroup" 67108864 "$(it_cgroup_read "${pid:-0}" memory memory.limit_in_bytes)" "$OUT"
kill_rm c-mem2

# -- seccomp: containerd's default profile is applied (mode 2) and refuses what it denies
it_run "${CRUN[@]}" --rm --seccomp "$IMG" c-sec sh -c 'grep ^Seccomp: /proc/self/status; unshare -U true && echo unshare-allowed || echo unshare-denied'
it_expect "run --seccomp: filter mode and a denied syscall" 0 'Seccomp:[[:space:]]+2.*unshare-denied'
it_run "${CRUN[@]}" --rm "$IMG" c-nosec grep ^Seccomp: /proc/self/status
it_expect "run without --seccomp: no filter" 0 'Seccomp:[[:space:]]+0'

# -- checkpoint/restore with CRIU (`ctr containers checkpoint --task --rw`, then `restore --live`)
CKREF=localhost/berth-it/c-ck-checkpoint:1
# counter ID EXEC_ID: the value the container's loop last wrote (renamed into place, so never
# read half-written: `echo >/tmp/n` would truncate it first).
counter() { "${CEXEC[@]}" --exec-id "$2" "$1" cat /tmp/n 2>/dev/null; }
if ! criu_out=$(criu check 2>&1); then
    printf 'SKIP %s: checkpoint/restore: `criu check` fails: %s\n' "$IT_SUITE" "$(printf '%s' "$criu_out" | tail -n 1)"
else
    it_run "${CRUN[@]}" -d "$IMG" c-ck sh -c 'i=0; while :; do i=$((i + 1)); echo $i >/tmp/n.new; mv /tmp/n.new /tmp/n; sleep 0.1; done'
    it_expect_ok "run -d: a counter to checkpoint"
    sleep 2
    it_run -t 60 "${CTR[@]}" containers checkpoint --task --rw c-ck "$CKREF"
    it_expect_ok "containers checkpoint --task --rw"
    # The task keeps running (ctr has no --exit); the value it had is in the checkpoint's rw layer.
    before=$(counter c-ck e-ck1)
    kill_rm c-ck
    it_run -t 60 "${CTR[@]}" containers restore --live --rw c-ck "$CKREF"
    it_expect_ok "containers restore --live --rw"
    pid=$(task_field c-ck 2)
    first=$(counter c-ck e-ck2)
    sleep 1
    after=$(counter c-ck e-ck3)
    # The checkpoint was taken before `before` was read, so the restored counter starts a little
    # below it; a counter started afresh would be at 1 or 2.
    # The restored task must be the runtime's under test (its state under --runc-root), not
    # the shim's default runc.
    if task_is c-ck RUNNING && [ -d "/proc/${pid:-0}" ] && [ "${before:-0}" -gt 15 ] &&
        { [ -e "$RROOT/$NS/c-ck" ] || [ -e "$RROOT/c-ck" ]; } &&
        [ "${first:-0}" -ge $((before - 5)) ] && [ "${after:-0}" -gt "${first:-0}" ]; then
        it_pass "restored task: running, the counter went on (${before:-?} at the checkpoint, $first, then $after)"
    else
        it_fail "restored task: running, the counter went on" "task '$(task_field c-ck 3) $pid', state under $RROOT: '$(ls "$RROOT" "$RROOT/$NS" 2>&1 | tr '\n' ' ')', counter at checkpoint '${before:-}', after restore '${first:-}', then '${after:-}'" "$(ctr_ tasks ls 2>&1)"
    fi
    kill_rm c-ck
    it_run "${CTR[@]}" images rm "$CKREF"
    it_expect_ok "checkpoint image removed"
fi

# -- timing
# shellcheck disable=SC2034 # TIME_A and TIME_B are used through a nameref
TIME_A=("${CRUN[@]}" --rm "$IMG" c-time echo hi)
# shellcheck disable=SC2034
TIME_B=("${CTR[@]}" run --runc-binary "$CMP" --runc-root "$RROOT" --fifo-dir "$W/fifo" --rm "$IMG" c-time-cmp echo hi)
it_time "ctr run --rm echo hi" TIME_A ${CMP:+TIME_B}

exit 0
