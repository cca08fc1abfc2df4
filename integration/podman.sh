#!/usr/bin/env bash
# podman 4.3 + conmon, with the runtime under test given as `podman --runtime PATH`. All of
# podman's configuration, storage and state live in the suite's temporary directory.
set -u
. "$(dirname "$0")/lib/common.sh"

it_require_packages podman conmon busybox-static util-linux
it_init podman

IMG=localhost/berth-it/busybox:latest
# podman (cgroupfs manager) puts containers in /libpod_parent/libpod-ID and conmon in
# /libpod_parent/conmon; the parent and conmon's group are podman's own.
IT_CGROUP_RE='/libpod_parent(/|$)'
IT_CGROUP_ENGINE_RE='^/libpod_parent(/conmon)?$'
# The blob-info cache of containers/image goes to /var/lib/containers/cache for root.
it_watch_dir /var/lib/containers/cache engine

# The VM's hard nofile/nproc limits are below podman's defaults (1048576); podman also lowers
# its own nproc limit to the pid space, so stay well below both.
nofile=$(ulimit -Hn)
[ "$nofile" = unlimited ] || [ "$nofile" -gt 4096 ] && nofile=4096
nproc=$(ulimit -Hu)
[ "$nproc" = unlimited ] || [ "$nproc" -gt 4096 ] && nproc=4096

mkdir -p "$W/root" "$W/runroot" "$W/tmp" "$W/net"
cmp_json=""
[ -n "$CMP_NAME" ] && cmp_json=", \"$CMP_NAME\""
cat >"$W/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
log_driver = "k8s-file"

[network]
network_config_dir = "$W/net"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$W/events.log"
tmp_dir = "$W/tmp"
volume_path = "$W/volumes"
static_dir = "$W/root/libpod"
lock_type = "file"
# podman passes --log-format=json (and reads the runtime's errors from its --log) only to the
# runtimes it knows by name.
runtime_supports_json = ["crun", "runc", "kata", "runsc", "krun", "$RT_NAME"$cmp_json]
EOF
cat >"$W/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$W/root"
runroot = "$W/runroot"
EOF
: >"$W/registries.conf"
export CONTAINERS_CONF=$W/containers.conf
export CONTAINERS_STORAGE_CONF=$W/storage.conf
export CONTAINERS_REGISTRIES_CONF=$W/registries.conf

P=(podman --runtime "$RT")
PRUN=("${P[@]}" run --network=none)
p_() { "${P[@]}" "$@"; }

engine_stop() {
    timeout 60 "${P[@]}" rm -af -t 0 >/dev/null 2>&1
    timeout 30 "${P[@]}" rmi -af >/dev/null 2>&1
    # conmon runs `podman container cleanup` when a container exits; let those finish.
    it_wait_for 15 eval '[ -z "$(it_leftover_pids)" ]'
    # containers/storage keeps its overlay directory bind-mounted (private) while in use.
    it_umount_under "^$W/root/overlay$"
}

# state ID: "STATUS PID EXITCODE"
state() { "${P[@]}" inspect -f '{{.State.Status}} {{.State.Pid}} {{.State.ExitCode}}' "$1" 2>&1; }

it_build_image "$W/busybox.tar" "$IMG" "$IT_BUSYBOX_CONFIG"
it_run "${P[@]}" load -i "$W/busybox.tar"
it_expect "image load" 0 "$IMG"
[ "$RC" = 0 ] || exit 1

it_run "${P[@]}" info --format '{{.Host.OCIRuntime.Path}}'
it_expect "podman info names the runtime" 0 "$RT"

# -- a short container: its output and exit code
it_run "${PRUN[@]}" --rm "$IMG" sh -c 'echo hello; exit 3'
it_expect "run: output and exit code" 3 '^hello$'

# -- a detached container: exec, pause/unpause, stop (TERM, then KILL)
it_run "${PRUN[@]}" -d --name p-bg "$IMG" sleep 600
it_expect_ok "run -d"
read -r st pid _ <<<"$(state p-bg)"
if [ "$st" = running ] && [ -d "/proc/${pid:-0}" ]; then
    it_pass "run -d: running, with a live pid"
else
    it_fail "run -d: running, with a live pid" "$(state p-bg)"
fi

it_run "${P[@]}" exec p-bg sh -c 'echo exec output; exit 5'
it_expect "exec: output and exit code" 5 '^exec output$'

it_run_tty "${P[*]} exec -it p-bg sh -c 'read x; tty; exit 6'"
it_expect "exec -it: a terminal, exit code" 6 '/dev/pts/[0-9]+'

it_run_tty "${PRUN[*]} --rm -it $IMG sh -c 'read x; tty; exit 4'"
it_expect "run -it: a terminal, exit code" 4 '/dev/pts/[0-9]+'

it_run "${P[@]}" pause p-bg
it_expect_ok "pause"
read -r st _ <<<"$(state p-bg)"
it_expect_frozen "pause: status paused, cgroup FROZEN" "$st" paused "${pid:-0}" FROZEN
it_run "${P[@]}" unpause p-bg
it_expect_ok "unpause"
read -r st _ <<<"$(state p-bg)"
it_expect_frozen "unpause: status running, cgroup THAWED" "$st" running "${pid:-0}" THAWED

# sleep as pid 1 ignores SIGTERM: stop must fall back to SIGKILL after the timeout.
t0=$SECONDS
it_run "${P[@]}" stop -t 2 p-bg
took=$((SECONDS - t0))
read -r st _ code <<<"$(state p-bg)"
if [ "$RC" = 0 ] && [ "$st" = exited ] && [ "$code" = 137 ] && [ "$took" -ge 2 ]; then
    it_pass "stop: SIGTERM ignored, SIGKILL after the timeout"
else
    it_fail "stop: SIGTERM ignored, SIGKILL after the timeout" "exit $RC after ${took}s, state '$st', exit code '$code'" "$OUT"
fi
it_run "${P[@]}" rm p-bg
it_expect_ok "rm"

# A container that handles SIGTERM stops at once, with its handler's exit code.
it_run "${PRUN[@]}" -d --name p-trap "$IMG" sh -c 'trap "exit 0" TERM; sleep 600 & wait'
read -r _ pid _ <<<"$(state p-trap)"
it_wait_for 10 it_handles "${pid:-0}" 15
t0=$SECONDS
it_run "${P[@]}" stop -t 20 p-trap
took=$((SECONDS - t0))
read -r st _ code <<<"$(state p-trap)"
if [ "$RC" = 0 ] && [ "$st" = exited ] && [ "$code" = 0 ] && [ "$took" -lt 10 ]; then
    it_pass "stop: SIGTERM handled"
else
    it_fail "stop: SIGTERM handled" "exit $RC after ${took}s, state '$st', exit code '$code'" "$OUT"
fi

# -- kill
it_run "${PRUN[@]}" -d --name p-kill "$IMG" sleep 600
it_run "${P[@]}" kill p-kill
it_expect_ok "kill"
it_run "${P[@]}" wait p-kill
it_expect "kill: exit code 137" 0 '^137$'
it_run "${PRUN[@]}" -d --name p-kill2 "$IMG" sh -c 'trap "exit 7" USR1; sleep 600 & wait'
read -r _ pid _ <<<"$(state p-kill2)"
it_wait_for 10 it_handles "${pid:-0}" 10
it_run "${P[@]}" kill -s USR1 p-kill2
it_expect_ok "kill -s USR1"
it_run "${P[@]}" wait p-kill2
it_expect "kill -s USR1: the handler's exit code" 0 '^7$'

# -- resources, as seen in the container's cgroups
it_run "${PRUN[@]}" -d --name p-res --memory 64m --pids-limit 50 --cpus 0.5 "$IMG" sleep 600
it_expect_ok "run --memory --pids-limit --cpus"
read -r st pid _ <<<"$(state p-res)"
it_expect_limits "" "${pid:-0}"

# -- checkpoint/restore with CRIU: a counter keeps counting from where it was
# counter NAME: the value the container's loop last wrote (renamed into place, so never read
# half-written: `echo >/tmp/n` would truncate it first).
counter() { "${P[@]}" exec "$1" cat /tmp/n 2>/dev/null; }
# counter_at_least NAME N: the counter has reached N.
counter_at_least() { local v; v=$(counter "$1") && [ "${v:-0}" -ge "$2" ]; }
# ck_restored WHAT NAME BEFORE: the container runs again and its counter went on from BEFORE
# (read at once: a counter started afresh would be far below it), and it still counts.
ck_restored() {
    local what=$1 name=$2 before=$3 st pid first after
    read -r st pid _ <<<"$(state "$name")"
    first=$(counter "$name")
    it_wait_for 10 counter_at_least "$name" $((${first:-0} + 5))
    after=$(counter "$name")
    if [ "$st" = running ] && [ -d "/proc/${pid:-0}" ] && [ "$before" -gt 0 ] &&
        [ "${first:-0}" -ge "$before" ] && [ "${after:-0}" -gt "${first:-0}" ]; then
        it_pass "$what: running, the counter went on from $before ($first, then $after)"
    else
        it_fail "$what: running, the counter went on from $before" "state '$st $pid', counter '$first', then '$after'" "$OUT"
    fi
}
if ! criu_out=$(criu check 2>&1); then
    printf 'SKIP %s: checkpoint/restore: `criu check` fails: %s\n' "$IT_SUITE" "$(printf '%s' "$criu_out" | tail -n 1)"
else
    it_run "${PRUN[@]}" -d --name p-ck "$IMG" sh -c 'i=0; while :; do i=$((i + 1)); echo $i >/tmp/n.new; mv /tmp/n.new /tmp/n; sleep 0.1; done'
    it_expect_ok "run -d: a counter to checkpoint"
    it_wait_for 10 counter_at_least p-ck 20
    read -r _ pid _ <<<"$(state p-ck)"
    it_run -t 60 "${P[@]}" container checkpoint p-ck
    read -r st _ <<<"$(state p-ck)"
    if [ "$RC" = 0 ] && [ "$st" = exited ] && [ ! -d "/proc/${pid:-0}" ]; then
        it_pass "container checkpoint: exited, the process gone"
    else
        it_fail "container checkpoint: exited, the process gone" "exit $RC, state '$st', pid ${pid:-?} $([ -d "/proc/${pid:-0}" ] && echo alive || echo gone)" "$OUT"
    fi
    # The counter's last value is in the container's filesystem, kept with the checkpoint.
    before=$(cat "$("${P[@]}" inspect -f '{{.GraphDriver.Data.UpperDir}}' p-ck 2>/dev/null)/tmp/n" 2>/dev/null)
    it_run -t 60 "${P[@]}" container restore p-ck
    it_expect_ok "container restore"
    ck_restored "container restore" p-ck "${before:-0}"
    it_run "${P[@]}" exec p-ck sh -c 'echo exec output; exit 5'
    it_expect "exec into the restored container" 5 '^exec output$'

    # --export to an archive, remove the container, --import it back
    it_run -t 60 "${P[@]}" container checkpoint --export "$W/p-ck.tar.gz" p-ck
    it_expect_ok "container checkpoint --export"
    before=$(cat "$("${P[@]}" inspect -f '{{.GraphDriver.Data.UpperDir}}' p-ck 2>/dev/null)/tmp/n" 2>/dev/null)
    it_run "${P[@]}" rm -f -t 0 p-ck
    it_expect_ok "rm of the exported container"
    it_run -t 60 "${P[@]}" container restore --import "$W/p-ck.tar.gz"
    it_expect_ok "container restore --import"
    ck_restored "container restore --import" p-ck "${before:-0}"
    it_run "${P[@]}" rm -f -t 0 p-ck
    it_expect_ok "rm -f of the restored container"
    rm -f "$W/p-ck.tar.gz"
fi

it_run "${P[@]}" rm -f -t 0 p-trap p-kill p-kill2 p-res
it_expect_ok "rm -f"
it_run "${P[@]}" ps -aq
it_expect "no containers left" 0 '^$'

# -- timing
# shellcheck disable=SC2034 # TIME_A and TIME_B are used through a nameref
TIME_A=("${PRUN[@]}" --rm "$IMG" echo hi)
# shellcheck disable=SC2034
TIME_B=(podman --runtime "$CMP" run --network=none --rm "$IMG" echo hi)
it_time "podman run --rm echo hi" TIME_A ${CMP:+TIME_B}

exit 0
