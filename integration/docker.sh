#!/usr/bin/env bash
# docker 20.10 (dockerd on its own containerd), with the runtime under test registered as
# `--add-runtime berth=PATH` and chosen per container with `docker run --runtime berth`.
set -u
. "$(dirname "$0")/lib/common.sh"

it_require_packages docker.io containerd busybox-static util-linux
it_init docker

IMG=localhost/berth-it/busybox:latest
CSOCK=$W/containerd/containerd.sock
DSOCK=$W/docker.sock
# Every container goes under this cgroup parent (dockerd's --cgroup-parent), which is dockerd's.
IT_CGROUP_RE='/berth-it-docker(/|$)'
IT_CGROUP_ENGINE_RE='^/berth-it-docker$'
# dockerd creates its plugin discovery directory here whatever its exec-root.
it_watch_dir /run/docker engine

CTRD_PID=""
DOCKERD_PID=""
D=(env DOCKER_CONFIG="$W/client" /usr/bin/docker -H "unix://$DSOCK")
DRUN=("${D[@]}" run --runtime berth --network none)

engine_stop() {
    if [ -n "$DOCKERD_PID" ] && kill -0 "$DOCKERD_PID" 2>/dev/null; then
        local ids
        ids=$(timeout 20 "${D[@]}" ps -aq 2>/dev/null)
        # shellcheck disable=SC2086
        [ -n "$ids" ] && timeout 60 "${D[@]}" rm -f $ids >/dev/null 2>&1
        timeout 30 "${D[@]}" rmi -f "$IMG" >/dev/null 2>&1
    fi
    it_stop_daemon "$DOCKERD_PID" 20
    # dockerd bind-mounts its data-root onto itself and may leave it there.
    it_umount_under "^$W/data$"
    it_stop_daemon "$CTRD_PID"
}

mkdir -p "$W/containerd" "$W/client"
it_containerd_toml "$W/containerd" >"$W/containerd.toml"
it_containerd_start CTRD_PID "$W/containerd.toml" "$W/containerd.log" "$CSOCK" || exit 1

# The runtime is registered in daemon.json (the same as --add-runtime berth=PATH); the trust key
# would otherwise be written to /etc/docker/key.json.
cmp_runtime=""
[ -n "$CMP" ] && cmp_runtime=", \"cmp\": { \"path\": \"$CMP\" }"
cat >"$W/daemon.json" <<EOF
{
  "runtimes": { "berth": { "path": "$RT" }$cmp_runtime },
  "deprecated-key-path": "$W/key.json"
}
EOF
it_daemon DOCKERD_PID "$W/dockerd.log" dockerd --config-file "$W/daemon.json" \
    --data-root "$W/data" --exec-root "$W/exec" --pidfile "$W/docker.pid" -H "unix://$DSOCK" \
    --containerd "$CSOCK" --cgroup-parent /berth-it-docker --storage-driver overlay2 \
    --bridge=none --iptables=false --ip-masq=false --ip-forward=false --userland-proxy=false
if it_wait_for 60 "${D[@]}" version; then
    it_pass "dockerd starts"
else
    it_fail "dockerd starts" "$(tail -n 20 "$W/dockerd.log")"
    exit 1
fi
it_run "${D[@]}" info --format '{{json .Runtimes}}'
it_expect "dockerd knows the runtime" 0 "\"berth\":\\{\"path\":\"$RT\""

it_build_image "$W/busybox.tar" "$IMG" "$IT_BUSYBOX_CONFIG"
it_run "${D[@]}" load -i "$W/busybox.tar"
it_expect "image load" 0 "$IMG"
[ "$RC" = 0 ] || exit 1

# state ID: "STATUS PID EXITCODE STARTEDAT"
state() { "${D[@]}" inspect -f '{{.State.Status}} {{.State.Pid}} {{.State.ExitCode}} {{.State.StartedAt}}' "$1" 2>&1; }

# -- a short container: its output and exit code
it_run "${DRUN[@]}" --rm "$IMG" sh -c 'echo hello; exit 3'
it_expect "run: output and exit code" 3 '^hello$'

# -- a detached container: exec, update, stats, pause/unpause, stop (TERM, then KILL)
it_run "${DRUN[@]}" -d --name d-bg "$IMG" sleep 600
it_expect_ok "run -d"
read -r st pid _ <<<"$(state d-bg)"
if [ "$st" = running ] && [ -d "/proc/${pid:-0}" ]; then
    it_pass "run -d: running, with a live pid"
else
    it_fail "run -d: running, with a live pid" "$(state d-bg)"
fi

it_run "${D[@]}" exec d-bg sh -c 'echo exec output; exit 5'
it_expect "exec: output and exit code" 5 '^exec output$'

it_run_tty "${D[*]} exec -it d-bg sh -c 'read x; tty; exit 6'"
it_expect "exec -it: a terminal, exit code" 6 '/dev/pts/[0-9]+'

it_run_tty "${DRUN[*]} --rm -it $IMG sh -c 'read x; tty; exit 4'"
it_expect "run -it: a terminal, exit code" 4 '/dev/pts/[0-9]+'

it_run "${D[@]}" update --memory 64m --memory-swap 128m --cpus 0.5 --pids-limit 50 d-bg
it_expect_ok "update --memory --cpus --pids-limit"
it_expect_limits "update " "${pid:-0}"

it_run "${D[@]}" stats --no-stream --format '{{.Name}} {{.MemUsage}} pids={{.PIDs}}' d-bg
it_expect "stats: usage against the new limit" 0 '^d-bg [0-9.]+[KMG]?i?B / 64MiB pids=1$'

it_run "${D[@]}" pause d-bg
it_expect_ok "pause"
read -r st _ <<<"$(state d-bg)"
it_expect_frozen "pause: status paused, cgroup FROZEN" "$st" paused "${pid:-0}" FROZEN
it_run "${D[@]}" unpause d-bg
it_expect_ok "unpause"
read -r st _ <<<"$(state d-bg)"
it_expect_frozen "unpause: status running, cgroup THAWED" "$st" running "${pid:-0}" THAWED

# sleep as pid 1 ignores SIGTERM: stop must fall back to SIGKILL after the timeout.
t0=$SECONDS
it_run "${D[@]}" stop -t 2 d-bg
took=$((SECONDS - t0))
read -r st _ code _ <<<"$(state d-bg)"
if [ "$RC" = 0 ] && [ "$st" = exited ] && [ "$code" = 137 ] && [ "$took" -ge 2 ]; then
    it_pass "stop: SIGTERM ignored, SIGKILL after the timeout"
else
    it_fail "stop: SIGTERM ignored, SIGKILL after the timeout" "exit $RC after ${took}s, state '$st', exit code '$code'" "$OUT"
fi

# -- restart: the same container id runs again (the runtime must have deleted the old one)
it_run "${DRUN[@]}" -d --name d-trap "$IMG" sh -c 'trap "exit 0" TERM; trap "exit 7" USR1; sleep 600 & wait'
read -r _ pid1 _ started1 <<<"$(state d-trap)"
it_wait_for 10 it_handles "${pid1:-0}" 15
t0=$SECONDS
it_run "${D[@]}" restart -t 20 d-trap
took=$((SECONDS - t0))
read -r st pid2 _ started2 <<<"$(state d-trap)"
if [ "$RC" = 0 ] && [ "$st" = running ] && [ "$pid2" != "$pid1" ] && [ "$started2" != "$started1" ] &&
    [ -d "/proc/${pid2:-0}" ] && [ "$took" -lt 10 ]; then
    it_pass "restart: stopped by SIGTERM, running again"
else
    it_fail "restart: stopped by SIGTERM, running again" "exit $RC after ${took}s; before: pid $pid1 $started1; after: $st pid $pid2 $started2" "$OUT"
fi

# -- kill
it_wait_for 10 it_handles "${pid2:-0}" 10
it_run "${D[@]}" kill -s USR1 d-trap
it_expect_ok "kill -s USR1"
it_run "${D[@]}" wait d-trap
it_expect "kill -s USR1: the handler's exit code" 0 '^7$'
it_run "${DRUN[@]}" -d --name d-kill "$IMG" sleep 600
it_run "${D[@]}" kill d-kill
it_expect_ok "kill"
it_run "${D[@]}" wait d-kill
it_expect "kill: exit code 137" 0 '^137$'

it_run "${D[@]}" rm -f d-bg d-trap d-kill
it_expect_ok "rm -f"
it_run "${D[@]}" ps -aq
it_expect "no containers left" 0 '^$'

# -- timing
# shellcheck disable=SC2034 # TIME_A and TIME_B are used through a nameref
TIME_A=("${DRUN[@]}" --rm "$IMG" echo hi)
# shellcheck disable=SC2034
TIME_B=("${D[@]}" run --runtime cmp --network none --rm "$IMG" echo hi)
it_time "docker run --rm echo hi" TIME_A ${CMP:+TIME_B}

exit 0
