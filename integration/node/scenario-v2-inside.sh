#!/usr/bin/env bash
# Runs INSIDE a systemd node booted on cgroup v2 (systemd in unified mode; integration/systemd.sh):
# one runtime's `--systemd-cgroup` lifecycle there. On this machine the v2 hierarchy has none of
# the memory, cpu or pids controllers (they are bound to v1), so the bundle asks for no limits:
# what is checked is the unit, its cgroup in the unified hierarchy, the annotations as
# properties, the freezer, and that delete leaves nothing.
#
#   scenario-v2-inside.sh RUNTIME NAME BUNDLE OUT
set -u
RT=$1 NAME=$2 BUNDLE=$3 OUT=$4
ROOT=/run/it2-$NAME
W=$(mktemp -d /tmp/scenario2.XXXXXX)
LABEL="systemd v2 ($NAME)"
. "$(dirname "$0")/inside-lib.sh"
rt() { "$RT" --root "$ROOT" --systemd-cgroup "$@"; }
show() { systemctl show "$1" -p "$2" --value 2>&1; }

eq "the node's /sys/fs/cgroup is cgroup2" "$(stat -f -c %T /sys/fs/cgroup)" cgroup2fs
cp -a "$BUNDLE" "$W/bundle"
cd "$W/bundle" || exit 1
U=cri-containerd-v2c1.scope
D=/sys/fs/cgroup/kubepods.slice/kubepods-pod1.slice/$U
if rt run -d v2c1 </dev/null >"$W/run.out" 2>&1; then pass "run -d"; else fail "run -d" "$(cat "$W/run.out")"; fi
eq "$U active in kubepods-pod1.slice" "$(show $U ActiveState) $(show $U Slice)" "active kubepods-pod1.slice"
pid=$(rt state v2c1 2>/dev/null | sed -n 's/.*"pid": *\([0-9]*\).*/\1/p')
if grep -qx "${pid:-x}" "$D/cgroup.procs" 2>/dev/null; then pass "the init is in the unit's v2 cgroup"; else
    fail "the init is in the unit's v2 cgroup" "$(ls "$D" 2>&1 | head -3)"
fi
eq "annotations as properties (TimeoutStopSec=7, CollectMode)" "$(show $U TimeoutStopUSec) $(show $U CollectMode)" "7s inactive-or-failed"
eq "Delegate, DevicePolicy" "$(show $U Delegate) $(show $U DevicePolicy)" "yes strict"
systemctl show $U -p Slice,ControlGroup,TimeoutStopUSec,CollectMode,Delegate,DevicePolicy | sort >"$OUT"
check "pause" rt pause v2c1
eq "paused: cgroup.freeze" "$(cat "$D/cgroup.freeze" 2>&1)" 1
check "resume" rt resume v2c1
eq "resumed: cgroup.freeze" "$(cat "$D/cgroup.freeze" 2>&1)" 0
check "delete -f" rt delete -f v2c1
for _ in $(seq 1 50); do [ -e "$D" ] || break; sleep 0.1; done
eq "after delete: no unit, no cgroup" "$(systemctl list-units --all --no-legend $U | grep -c .) $(test -e "$D" && echo dir)" "0 "
cd / && rm -rf "$W" "$ROOT"
