#!/usr/bin/env bash
# The systemd cgroup driver (`--systemd-cgroup`) against a real systemd: this machine has none
# as PID 1, so the suite boots one (lib/node.sh: Debian's systemd as PID 1 of a privileged
# container, the host's cgroup hierarchies given to it) and runs inside that "node":
#
#   node/scenario-inside.sh   the runtime's own lifecycle: run, the unit and its slice, limits in
#                             cgroupfs and as unit properties, update, pause/resume, events,
#                             exec, kill --all, delete; reuse of a dead container's unit; bad input
#   node/engines-inside.sh    containerd with SystemdCgroup = true (ctr and the CRI client) and
#                             podman with cgroup_manager = "systemd"
#
# each with the runtime under test and with runc, then compares what systemd shows of the two
# runtimes' units. The node's root filesystem is cached (/var/cache/berth/systemd-node).
set -u
. "$(dirname "$0")/lib/common.sh"
. "$(dirname "$0")/lib/node.sh"

it_require_packages debootstrap busybox-static runc python3 protobuf-compiler
it_init systemd
IT_CGROUP_RE="^/sys/fs/cgroup/[^/]+$NODE_CGROUP(/|$)"
IT_CGROUP_ENGINE_RE="^$NODE_CGROUP$"
# The node boots with Berth's build (with RUNTIME=/usr/sbin/runc too: the node is the test bed).
NODE_BOOTER=$(RUNTIME="" it_find_runtime)
[ -x "$NODE_BOOTER" ] || NODE_BOOTER=$RT_REAL

NODE=n1
NODE2=n2
engine_stop() {
    node_stop "$NODE"
    node_stop "$NODE2"
}

t0=$SECONDS
if node_prepare; then
    it_pass "node root filesystem (debootstrap $NODE_RELEASE, cached)"
else
    it_fail "node root filesystem (debootstrap $NODE_RELEASE, cached)" "$(tail -n 5 "$W/debootstrap.log" 2>/dev/null)"
    exit 1
fi
it_log "node root filesystem: $((SECONDS - t0)) s"

# The CRI client (as cri.sh builds it; a no-op when it is built already).
CLIENT_TARGET=${CRI_CLIENT_TARGET_DIR:-$IT_REPO/target/cri-client}
if CARGO_TARGET_DIR=$CLIENT_TARGET cargo build --locked --manifest-path "$IT_DIR/cri-client/Cargo.toml" >"$W/cri-build.log" 2>&1; then
    it_pass "CRI client builds"
else
    it_fail "CRI client builds" "$(tail -n 5 "$W/cri-build.log")"
    exit 1
fi
CLIENT=$CLIENT_TARGET/x86_64-unknown-linux-gnu/debug/berth-cri-check

t0=$SECONDS
if node_boot "$NODE"; then
    it_pass "systemd boots as PID 1 of the node"
else
    it_fail "systemd boots as PID 1 of the node" "$(cat "$W/node-$NODE/boot.log" 2>/dev/null)"
    exit 1
fi
it_log "node boot: $((SECONDS - t0)) s"

# What the scripts inside need, copied into each node's /share.
S=$W/share
mkdir -p "$S/bundle/rootfs/bin"
cp "$IT_DIR/node/inside-lib.sh" "$IT_DIR/node/scenario-inside.sh" \
    "$IT_DIR/node/scenario-v2-inside.sh" "$IT_DIR/node/engines-inside.sh" "$S/"
cp "$CLIENT" "$S/berth-cri-check"
cp /bin/busybox "$S/bundle/rootfs/bin/busybox"
for a in sh sleep true cat; do ln -s busybox "$S/bundle/rootfs/bin/$a"; done
"$RT_REAL" spec --bundle "$S/bundle" >/dev/null 2>&1 || runc spec --bundle "$S/bundle"
mkdir -p "$S/bundle-v2"
python3 - "$S/bundle/config.json" <<'EOF'
import json, sys
p = sys.argv[1]
c = json.load(open(p))
c["process"]["terminal"] = False
c["process"]["args"] = ["sleep", "300"]
c["annotations"] = {"org.berth.test": "x"}
c["linux"]["cgroupsPath"] = "kubepods-pod1.slice:cri-containerd:c1"
c["linux"]["resources"] = {
    "devices": [{"allow": False, "access": "rwm"}],
    "memory": {"limit": 67108864},
    "cpu": {"shares": 512, "quota": 50000, "period": 100000},
    "pids": {"limit": 64},
}
json.dump(c, open(p, "w"), indent=1)
# For the v2 node (no memory, cpu or pids controller in this host's v2 hierarchy): no limits.
c["linux"]["cgroupsPath"] = "kubepods-pod1.slice:cri-containerd:v2c1"
c["linux"]["resources"] = {"devices": [{"allow": False, "access": "rwm"}]}
c["annotations"] = {"org.systemd.property.TimeoutStopSec": "7",
                    "org.systemd.property.CollectMode": "'inactive-or-failed'"}
json.dump(c, open(p.replace("/bundle/", "/bundle-v2/"), "w"), indent=1)
EOF
cp -a "$S/bundle/rootfs" "$S/bundle-v2/"
it_build_image "$S/busybox.tar" localhost/berth-it/busybox:latest "$IT_BUSYBOX_CONFIG"
it_build_image "$S/pause.tar" localhost/berth-it/pause:latest \
    '{"Env":["PATH=/bin"],"Entrypoint":["/bin/sh","-c","trap \"exit 0\" TERM INT; while :; do sleep 3600 & wait $!; done"]}'

cp -a "$S/." "$(node_path "$NODE")/share/"
P=$(node_path "$NODE")/share

# Runs a script inside and relays its PASS/FAIL lines as the suite's checks.
inside() {
    local line
    while IFS= read -r line; do
        printf '%s\n' "$line"
        case $line in
        "PASS "*) IT_PASSED=$((IT_PASSED + 1)) ;;
        "FAIL "*) IT_FAILED=$((IT_FAILED + 1)) ;;
        esac
    done < <(timeout -k 5 300 "$NODE_BOOTER" --root "$W/node-state" exec \
        --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --env RT_NAME="$2" "$(node_id "${IN_NODE:-$NODE}")" bash "${@:3}" </dev/null 2>&1)
}

for who in "rt-under-test $RT_NAME" "runc runc"; do
    set -- $who
    bin=/usr/local/bin/$1 name=$2
    [ "$name" = runc ] && [ "$RT_NAME" = runc ] && continue
    inside scenario "$name" /share/scenario-inside.sh "$bin" "$name" /share/bundle "/share/props-$name"
    inside engines "$name" /share/engines-inside.sh "$bin" /share/berth-cri-check /share/busybox.tar /share/pause.tar
done

# Beside the reference: the same unit names, slices and properties as runc's.
same_as_runc() { # same_as_runc LABEL FILE-PREFIX
    [ "$RT_NAME" = runc ] && return
    local d
    if d=$(diff "$2-$RT_NAME" "$2-runc" 2>&1); then
        it_pass "$1: the unit's slice, cgroup and properties are runc's ($(wc -l <"$2-runc") lines of systemctl show)"
    else
        it_fail "$1: the unit's slice, cgroup and properties are runc's" "$d"
    fi
}
same_as_runc "hybrid node" "$P/props"
node_stop "$NODE"

# The same on cgroup v2: a second node, systemd in unified mode.
if node_boot "$NODE2" v2; then
    it_pass "systemd boots as PID 1 of a cgroup v2 node"
    S2=$(node_path "$NODE2")/share
    cp -a "$S/." "$S2/"
    for who in "rt-under-test $RT_NAME" "runc runc"; do
        set -- $who
        [ "$2" = runc ] && [ "$RT_NAME" = runc ] && continue
        IN_NODE=$NODE2 inside scenario-v2 "$2" /share/scenario-v2-inside.sh "/usr/local/bin/$1" "$2" /share/bundle-v2 "/share/props2-$2"
    done
    same_as_runc "v2 node" "$S2/props2"
else
    it_fail "systemd boots as PID 1 of a cgroup v2 node" "$(cat "$W/node-$NODE2/boot.log" 2>/dev/null)"
fi
exit 0
