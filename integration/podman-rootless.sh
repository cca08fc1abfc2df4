#!/usr/bin/env bash
# Rootless podman 4.3 (+ conmon) with the runtime under test given as `podman --runtime PATH`,
# run by a throwaway unprivileged user made for the suite (useradd, subordinate ids from
# usermod --add-subuids): podman makes its user namespace with newuidmap/newgidmap and calls the
# runtime inside it, as uid 0 of that namespace. Storage (vfs), configuration, runtime dir and
# the user's home all live in the suite's temporary directory; the user, its processes (podman's
# pause process among them) and its files are removed at the end, pass or fail.
set -u
. "$(dirname "$0")/lib/common.sh"

it_require_packages podman conmon busybox-static util-linux uidmap
it_init podman-rootless

IMG=localhost/berth-it/busybox:latest
U=brit$$
SUB=$((65536 * (2000 + $$ % 1000)))
UH=$W/u
mkdir -p "$UH"/{home,xdg,root,runroot,tmp,net,bin}

user_stop() {
    local pids p
    for _ in 1 2 3 4 5; do
        pids=$(ps -o pid= -u "$U" 2>/dev/null)
        [ -n "$pids" ] || break
        # shellcheck disable=SC2086
        it_kill_pids $pids
    done
    id "$U" >/dev/null 2>&1 || return 0
    usermod --del-subuids "$SUB-$((SUB + 65535))" --del-subgids "$SUB-$((SUB + 65535))" "$U" 2>/dev/null
    userdel "$U" 2>/dev/null
    if id "$U" >/dev/null 2>&1; then it_fail "cleanup: user $U removed"; else
        it_pass "cleanup: user $U removed"
    fi
    if grep -q "^$U:" /etc/subuid /etc/subgid; then it_fail "cleanup: subordinate ranges of $U removed"; else
        it_pass "cleanup: subordinate ranges of $U removed"
    fi
}

engine_stop() {
    [ -x "${AS_USER:-}" ] && timeout 60 "$AS_USER" podman rm -af -t 0 >/dev/null 2>&1
    user_stop
}

if ! useradd --system --user-group --no-create-home --home-dir "$UH/home" --shell /usr/sbin/nologin "$U"; then
    it_fail "useradd $U"
    exit 1
fi
usermod --add-subuids "$SUB-$((SUB + 65535))" --add-subgids "$SUB-$((SUB + 65535))" "$U" ||
    it_fail "usermod --add-subuids for $U"
UID_=$(id -u "$U")
GID_=$(id -g "$U")

# A runtime binary the user may execute, under the name podman knows it by.
cp "$RT_REAL" "$UH/bin/$RT_NAME"
URT=$UH/bin/$RT_NAME
cat >"$UH/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
log_driver = "k8s-file"

[network]
network_config_dir = "$UH/net"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$UH/events.log"
tmp_dir = "$UH/tmp"
volume_path = "$UH/volumes"
static_dir = "$UH/root/libpod"
lock_type = "file"
runtime_supports_json = ["crun", "runc", "kata", "runsc", "krun", "$RT_NAME"]
EOF
cat >"$UH/storage.conf" <<EOF
[storage]
driver = "vfs"
graphroot = "$UH/root"
runroot = "$UH/runroot"
EOF
: >"$UH/registries.conf"
it_build_image "$UH/busybox.tar" "$IMG" "$IT_BUSYBOX_CONFIG"
chown -R "$U:$U" "$UH"
chmod 700 "$UH/xdg"

# $AS_USER CMD…: CMD as the throwaway user, with podman's environment pointing into $UH (a
# script, so that `timeout` in it_run can run it).
AS_USER=$W/as-user
cat >"$AS_USER" <<EOF
#!/bin/sh
exec setpriv --reuid "$UID_" --regid "$GID_" --init-groups -- env -i \\
    PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME="$UH/home" USER="$U" XDG_RUNTIME_DIR="$UH/xdg" \\
    CONTAINERS_CONF="$UH/containers.conf" CONTAINERS_STORAGE_CONF="$UH/storage.conf" \\
    CONTAINERS_REGISTRIES_CONF="$UH/registries.conf" "\$@"
EOF
chmod 755 "$AS_USER"
P=("$AS_USER" podman --runtime "$URT")
PRUN=("${P[@]}" run --network=none)
state() { "${P[@]}" inspect -f '{{.State.Status}} {{.State.Pid}} {{.State.ExitCode}}' "$1" 2>&1; }

it_run -t 120 "${P[@]}" load -i "$UH/busybox.tar"
it_expect "image load (as $U)" 0 "$IMG"
[ "$RC" = 0 ] || exit 1

it_run "${P[@]}" info --format '{{.Host.Security.Rootless}} {{.Host.OCIRuntime.Path}}'
it_expect "podman info: rootless, the runtime" 0 "^true $URT$"

# -- a short container: output and exit code, uid 0 inside, podman's id map
it_run "${PRUN[@]}" --rm "$IMG" sh -c 'echo hi; id -u; cat /proc/self/uid_map; exit 3'
it_expect "run --rm: output and exit code" 3 '^hi'
it_expect "run --rm: uid 0 inside, mapped to $U and its subordinate range" 3 \
    $'\n0\n +0 +'"$UID_"$' +1\n +1 +'"$SUB"' +65536'

# -- a detached container: the host sees the user's uid; exec, kill, stop, rm
it_run "${PRUN[@]}" -d --name r-bg "$IMG" sleep 600
it_expect_ok "run -d"
read -r st pid _ <<<"$(state r-bg)"
huid=$(awk '/^Uid:/ {print $2, $3, $4, $5}' "/proc/${pid:-0}/status" 2>/dev/null)
it_eq "run -d: running, the init is $U on the host" "running $UID_ $UID_ $UID_ $UID_" "$st $huid"

it_run "${P[@]}" exec r-bg sh -c 'echo exec output; id -u; exit 5'
it_expect "exec: output and exit code" 5 $'^exec output\n0$'

it_run "${P[@]}" kill r-bg
it_expect_ok "kill"
it_run "${P[@]}" wait r-bg
it_expect "kill: exit code 137" 0 '^137$'

it_run "${PRUN[@]}" -d --name r-trap "$IMG" sh -c 'trap "exit 0" TERM; sleep 600 & wait'
read -r _ pid _ <<<"$(state r-trap)"
it_wait_for 10 it_handles "${pid:-0}" 15
it_run "${P[@]}" stop -t 20 r-trap
read -r st _ code <<<"$(state r-trap)"
it_eq "stop: SIGTERM handled" "0 exited 0" "$RC $st $code" "$OUT"

it_run "${P[@]}" rm -f -t 0 r-bg r-trap
it_expect_ok "rm -f"
it_run "${P[@]}" ps -aq
it_expect "no containers left" 0 '^$'

# -- timing: one run unless asked for more. Here each `run --rm` of rootless podman takes ~20 s
# with runc as with Berth: podman waits out its conmon timeout before it sees the exit.
IT_TIMING_RUNS=${IT_TIMING_RUNS:-1}
# shellcheck disable=SC2034 # TIME_A is used through a nameref
TIME_A=("${PRUN[@]}" --rm "$IMG" echo hi)
it_time "rootless podman run --rm echo hi" TIME_A

exit 0
