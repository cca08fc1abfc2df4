#!/usr/bin/env bash
# Runs INSIDE the systemd node (integration/systemd.sh copies it there): containerd with
# `SystemdCgroup = true` (ctr, and the CRI plugin driven by the CRI client) and podman with
# `cgroup_manager = "systemd"`, each running the runtime under test, and what systemd and
# cgroupfs show of their containers. One `PASS systemd-engines: …` / `FAIL …` line per check.
#
#   engines-inside.sh RUNTIME CRI_CLIENT BUSYBOX_TAR PAUSE_TAR
set -u
RT=$1 CLIENT=$2 BUSYBOX_TAR=$3 PAUSE_TAR=$4
NAME=${RT_NAME:-$(basename "$RT")}
W=$(mktemp -d /tmp/engines.XXXXXX)
LABEL="systemd-engines ($NAME)"
. "$(dirname "$0")/inside-lib.sh"
# unit_in UNIT SLICE: the unit is active, in SLICE
unit_in() {
    [ "$(systemctl is-active "$1")" = active ] || { systemctl status "$1" --no-pager; return 1; }
    local s
    s=$(systemctl show "$1" -p Slice --value)
    [ "$s" = "$2" ] || { echo "slice of $1 is $s, not $2"; return 1; }
}
file_is() { # file_is PATH VALUE
    local v
    v=$(cat "$1" 2>&1)
    [ "$v" = "$2" ] || { echo "$1 is $v, not $2"; return 1; }
}

# --- containerd --------------------------------------------------------------------------
mkdir -p "$W/ctrd" "$W/cni/bin" "$W/cni/conf"
SOCK=$W/ctrd/containerd.sock
cat >"$W/containerd.toml" <<EOF
version = 2
root = "/var/lib/containerd"
state = "$W/ctrd/state"
[grpc]
  address = "$SOCK"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "localhost/berth-it/pause:latest"
  restrict_oom_score_adj = true
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$W/cni/bin"
    conf_dir = "$W/cni/conf"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "rt"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.rt]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.rt.options]
        BinaryName = "$RT"
        SystemdCgroup = true
EOF
containerd --config "$W/containerd.toml" >"$W/containerd.log" 2>&1 &
CTRD=$!
for _ in $(seq 1 100); do ctr -a "$SOCK" version >/dev/null 2>&1 && break; sleep 0.1; done
check "containerd starts (SystemdCgroup = true)" ctr -a "$SOCK" version
CTR=(ctr -a "$SOCK" -n k8s.io)
check "images import" "${CTR[@]}" images import "$BUSYBOX_TAR"
"${CTR[@]}" images import "$PAUSE_TAR" >/dev/null 2>&1
IMG=localhost/berth-it/busybox:latest

check "ctr run --runc-systemd-cgroup" "${CTR[@]}" run -d --runc-binary "$RT" --runc-systemd-cgroup \
    --cgroup kubepods-pod1.slice:ctr:c1 --memory-limit 67108864 "$IMG" c1 sleep 300
check "ctr: ctr-c1.scope is active in kubepods-pod1.slice" unit_in ctr-c1.scope kubepods-pod1.slice
D=kubepods.slice/kubepods-pod1.slice/ctr-c1.scope
check "ctr: the memory limit is in the scope's cgroup" \
    file_is "/sys/fs/cgroup/memory/$D/memory.limit_in_bytes" 67108864
"${CTR[@]}" tasks kill -s KILL c1 >/dev/null 2>&1
for _ in $(seq 1 50); do
    "${CTR[@]}" tasks ls -q 2>/dev/null | grep -q '^c1$' || break
    "${CTR[@]}" tasks rm c1 >/dev/null 2>&1 || sleep 0.1
done
"${CTR[@]}" containers rm c1 >/dev/null 2>&1
check "ctr: after the task is removed, no unit and no cgroup" gone ctr-c1.scope "$D"

# The CRI path: the calls kubelet makes, with the pods in a systemd slice.
out=$(timeout -k 5 300 "$CLIENT" --socket "$SOCK" --handler rt --image "$IMG" \
    --log-dir "$W/logs" --cgroup-parent kubepods-besteffort-pod2.slice --runtime-name "$NAME" \
    --timing-runs 0 2>&1)
rc=$?
printf '%s\n' "$out" | sed -n 's/^\(PASS\|FAIL\) cri: /\1 systemd-engines ('"$NAME"') CRI: /p;s/^\(    |.*\)/\1/p'
if [ "$rc" -gt 1 ]; then fail "CRI client ran to its end" "exit status $rc"; fi
check "CRI: no cri-containerd scope is left in kubepods-besteffort-pod2.slice" \
    gone 'cri-containerd-*.scope' 'kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod2.slice/cri-containerd-*.scope'
"${CTR[@]}" images rm "$IMG" localhost/berth-it/pause:latest >/dev/null 2>&1
kill "$CTRD" 2>/dev/null
wait "$CTRD" 2>/dev/null

# --- podman ------------------------------------------------------------------------------
mkdir -p /etc/containers
cat >/etc/containers/containers.conf <<EOF
[engine]
cgroup_manager = "systemd"
runtime = "rt"
events_logger = "file"
[engine.runtimes]
rt = ["$RT"]
EOF
cat >/etc/containers/storage.conf <<EOF
[storage]
driver = "overlay"
runroot = "/run/containers/storage"
graphroot = "/var/lib/containers/storage"
EOF
check "podman load" podman load -i "$BUSYBOX_TAR"
if id=$(podman run -d --name p1 --network none --memory 64m --pids-limit 50 "$IMG" sleep 300 2>&1); then
    pass "podman run -d (cgroup_manager = systemd)"
    check "podman: libpod-ID.scope is active in machine.slice" unit_in "libpod-$id.scope" machine.slice
    D=machine.slice/libpod-$id.scope
    check "podman: memory and pids limits in the scope's cgroup" \
        bash -c "$(declare -f file_is); file_is /sys/fs/cgroup/memory/$D/memory.limit_in_bytes 67108864 && file_is /sys/fs/cgroup/pids/$D/pids.max 50"
    check "podman exec" podman exec p1 true
    check "podman rm -f" podman rm -f -t 0 p1
    check "podman: after rm, no unit and no cgroup" gone "libpod-$id.scope" "$D"
else
    fail "podman run -d (cgroup_manager = systemd)" "$id"
fi
out=$(podman run --rm --network none "$IMG" echo hi 2>&1)
if [ "$out" = hi ]; then pass "podman run --rm"; else fail "podman run --rm" "$out"; fi
podman rm -af -t 0 >/dev/null 2>&1
podman rmi -af >/dev/null 2>&1
rm -rf "$W"
