#!/usr/bin/env bash
# Kubernetes' path without kubelet: containerd's CRI plugin with a runtime handler `berth`
# (what a RuntimeClass names) that runs the runtime under test through containerd-shim-runc-v2,
# driven over the CRI socket by cri-client/ (a separate cargo package; it is built here, into
# CRI_CLIENT_TARGET_DIR, default target/cri-client at the top of the repository).
set -u
. "$(dirname "$0")/lib/common.sh"

it_require_packages containerd busybox-static protobuf-compiler
it_init cri

IMG=localhost/berth-it/busybox:latest
PAUSE=localhost/berth-it/pause:latest
SOCK=$W/containerd.sock
CG_PARENT=/berth-it-cri
# Pods are given this cgroup parent (kubelet would give /kubepods/…, which it creates).
IT_CGROUP_RE="$CG_PARENT(/|$)"
IT_CGROUP_ENGINE_RE="^$CG_PARENT$"
CTR=(ctr -a "$SOCK" -n k8s.io)

# The client: built before the daemon starts (cargo's output goes to stderr).
CLIENT_DIR=$IT_DIR/cri-client
CLIENT_TARGET=${CRI_CLIENT_TARGET_DIR:-$IT_REPO/target/cri-client}
it_log "building the CRI client (target dir $CLIENT_TARGET)"
if CARGO_TARGET_DIR=$CLIENT_TARGET cargo build --locked --manifest-path "$CLIENT_DIR/Cargo.toml" >&2; then
    it_pass "CRI client builds"
else
    it_fail "CRI client builds"
    exit 1
fi
# The repository's .cargo/config.toml names the target, so the output has its triple.
CLIENT=$CLIENT_TARGET/x86_64-unknown-linux-gnu/debug/berth-cri-check

CTRD_PID=""
engine_stop() {
    if [ -n "$CTRD_PID" ] && kill -0 "$CTRD_PID" 2>/dev/null; then
        # Pods the client could not remove (it removes its own).
        it_ctr_remove_all "${CTR[@]}"
    fi
    it_stop_daemon "$CTRD_PID"
    # The CRI plugin keeps each sandbox's /dev/shm mounted under its state directory until the
    # sandbox is removed; containerd does not unmount what it left when it stops.
    it_umount_under "^$W/state/io.containerd.grpc.v1.cri/sandboxes/[^/]+/shm$"
}

mkdir -p "$W/cni/bin" "$W/cni/conf" "$W/runtime-root" "$W/logs"
{
    it_containerd_toml "$W" cri
    cat <<EOF
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE"
  # The pause container asks for oomScoreAdj -998; this VM has no CAP_SYS_RESOURCE.
  restrict_oom_score_adj = true
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$W/cni/bin"
    conf_dir = "$W/cni/conf"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.berth]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.berth.options]
        BinaryName = "$RT"
        Root = "$W/runtime-root"
        SystemdCgroup = false
EOF
    # IT_COMPARE: a second handler, for the timing runs only.
    [ -n "$CMP" ] && cat <<EOF
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.cmp]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.cmp.options]
        BinaryName = "$CMP"
        Root = "$W/runtime-root-cmp"
        SystemdCgroup = false
EOF
} >"$W/containerd.toml"
it_containerd_start CTRD_PID "$W/containerd.toml" "$W/containerd.log" "$SOCK" || exit 1

# The pause image: a shell that waits for SIGTERM (the pod's pid 1 and namespace holder).
it_build_image "$W/busybox.tar" "$IMG" "$IT_BUSYBOX_CONFIG"
it_build_image "$W/pause.tar" "$PAUSE" \
    '{"Env":["PATH=/bin"],"Entrypoint":["/bin/sh","-c","trap \"exit 0\" TERM INT; while :; do sleep 3600 & wait $!; done"]}'
it_run "${CTR[@]}" images import "$W/busybox.tar"
it_expect_ok "image import (k8s.io namespace)"
it_run "${CTR[@]}" images import "$W/pause.tar"
it_expect_ok "pause image import (k8s.io namespace)"

# The client's lines are the suite's checks.
# After a failure and its detail lines, the runtime calls made until then (IT_TRACE=1).
trace_due=0
while IFS= read -r line; do
    if [ "$trace_due" = 1 ] && [[ $line != "    |"* ]]; then
        it_trace_tail
        trace_due=0
    fi
    printf '%s\n' "$line"
    case $line in
    "PASS "*)
        IT_PASSED=$((IT_PASSED + 1))
        it_trace_mark
        ;;
    "FAIL "*)
        IT_FAILED=$((IT_FAILED + 1))
        trace_due=1
        ;;
    "TIME "*) [ -n "${IT_TIMES_FILE:-}" ] && printf '%s\n' "$line" >>"$IT_TIMES_FILE" ;;
    esac
done < <(timeout -k 5 300 "$CLIENT" --socket "$SOCK" --handler berth --image "$IMG" \
    --log-dir "$W/logs" --cgroup-parent "$CG_PARENT" --runtime-name "$RT_NAME" \
    --timing-runs "${IT_TIMING_RUNS:-5}" ${CMP:+--compare-handler cmp --compare-name "$CMP_NAME"} 2>&1)
wait $! 2>/dev/null
client_rc=$?
[ "$trace_due" = 1 ] && it_trace_tail
# 0: all passed, 1: some failed (and said so); anything else is a crash or a timeout.
if [ "$client_rc" -gt 1 ]; then
    it_fail "CRI client ran to its end" "it exited with status $client_rc"
fi

"${CTR[@]}" images rm "$IMG" "$PAUSE" >/dev/null 2>&1
exit 0
