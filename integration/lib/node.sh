# shellcheck shell=bash
# A systemd "node" for the suites: Debian's systemd as PID 1 of a privileged container (its own
# pid, mount, uts, ipc and cgroup namespaces; the host's cgroup hierarchies mounted rw inside),
# the way a container manager runs a systemd machine. Sourced after lib/common.sh (uses W, RT_REAL,
# it_apt_install, it_log).
#
#   node_prepare           the root filesystem, cached in $NODE_CACHE (debootstrap, ~1.5 min cold)
#   node_boot NAME [v2]    boots a node on an overlay of the cache; waits for systemd to be up
#                          (v2: /sys/fs/cgroup is a cgroup2 mount, systemd in unified mode)
#   node_exec NAME CMD…    runs CMD inside (through the booting runtime's exec)
#   node_path NAME         the node's root filesystem as the host sees it (to put files in)
#   node_stop NAME         shuts systemd down (SIGRTMIN+3), deletes the container, unmounts and
#                          removes what the node had: overlay, cgroups, state
#
# Inside, the runtime under test is /usr/local/bin/rt-under-test (a copy of RT_REAL) and runc is
# /usr/local/bin/runc (the host's, bind-mounted).

NODE_RELEASE=bookworm
NODE_PACKAGES=systemd,systemd-sysv,dbus,libseccomp2,procps,containerd,podman,conmon,crun,containernetworking-plugins,iptables,uidmap,ca-certificates
NODE_CACHE=${BERTH_NODE_CACHE:-/var/cache/berth/systemd-node}
NODE_MIRROR=${BERTH_NODE_MIRROR:-http://deb.debian.org/debian}
# Units that have nothing to do in a container (no udev, no ttys, no logins) or that would
# start the engines the suite starts itself with its own configuration.
NODE_MASKED="systemd-udevd.service systemd-udevd-control.socket systemd-udevd-kernel.socket
getty@tty1.service console-getty.service systemd-networkd-wait-online.service
systemd-logind.service containerd.service podman.service podman.socket
podman-restart.service podman-auto-update.service podman-auto-update.timer
podman-clean-transient.service"
NODE_CGROUP=/berth-it-systemd-node

node_prepare() {
    local key="$NODE_RELEASE $NODE_PACKAGES masked: $(echo $NODE_MASKED)"
    if [ -f "$NODE_CACHE/.berth-node-key" ] && [ "$(cat "$NODE_CACHE/.berth-node-key")" = "$key" ]; then
        return 0
    fi
    command -v debootstrap >/dev/null || it_apt_install debootstrap || return 1
    local new=$NODE_CACHE.new t0=$SECONDS
    rm -rf "$new"
    mkdir -p "$(dirname "$NODE_CACHE")"
    it_log "node: debootstrap $NODE_RELEASE into $NODE_CACHE (cached afterwards)"
    if ! debootstrap --variant=minbase --include="$NODE_PACKAGES" "$NODE_RELEASE" "$new" \
        "$NODE_MIRROR" >"$W/debootstrap.log" 2>&1; then
        tail -n 20 "$W/debootstrap.log" >&2
        rm -rf "$new"
        return 1
    fi
    local u
    for u in $NODE_MASKED; do ln -sf /dev/null "$new/etc/systemd/system/$u"; done
    mkdir -p "$new/usr/local/bin" "$new/share"
    : >"$new/usr/local/bin/rt-under-test"
    : >"$new/usr/local/bin/runc"
    printf '%s\n' "$key" >"$new/.berth-node-key"
    rm -rf "$NODE_CACHE"
    mv "$new" "$NODE_CACHE"
    it_log "node: root filesystem ready in $((SECONDS - t0)) s"
}

node_path() { printf '%s\n' "$W/node-$1/rootfs"; }

# The booting runtime (Berth's binary whatever RUNTIME is: the node is the test bed, not the
# subject) and the node's container id.
node_rt() { "$NODE_BOOTER" --root "$W/node-state" "$@"; }
node_id() { printf 'berth-it-node-%s\n' "$1"; }

node_boot() {
    local name=$1 mode=${2:-hybrid} d=$W/node-$1
    mkdir -p "$d/upper" "$d/work" "$d/rootfs" "$d/bin"
    mount -t overlay overlay -o "lowerdir=$NODE_CACHE,upperdir=$d/upper,workdir=$d/work" "$d/rootfs" || return 1
    # A copy: a rebuild of the binary on the host does not change what the node runs.
    cp "$RT_REAL" "$d/bin/rt-under-test"
    "$NODE_BOOTER" spec --bundle "$d" >/dev/null || return 1
    python3 - "$d" "$name" "$mode" <<'EOF' || return 1
import json, sys
d, name, mode = sys.argv[1], sys.argv[2], sys.argv[3]
c = json.load(open(d + "/config.json"))
c["root"] = {"path": "rootfs", "readonly": False}
p = c["process"]
p["terminal"] = False
p["args"] = ["/sbin/init"]
p["env"] = ["container=berth", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
# Every capability the host's bounding set has (this VM lacks CAP_SYS_RESOURCE).
bnd = int(open("/proc/self/status").read().split("CapBnd:")[1].split()[0], 16)
names = ["CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID",
         "SETUID", "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST",
         "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO",
         "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
         "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE",
         "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM",
         "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE"]
caps = ["CAP_" + n for i, n in enumerate(names) if bnd >> i & 1]
p["capabilities"] = {k: caps for k in ("bounding", "effective", "permitted")}
p.pop("noNewPrivileges", None)
p["rlimits"] = []
L = c["linux"]
L["maskedPaths"] = []
L["readonlyPaths"] = []
L.pop("seccomp", None)
L["resources"] = {"devices": [{"allow": True, "access": "rwm"}]}
L["cgroupsPath"] = "/berth-it-systemd-node/" + name
L["namespaces"] = [{"type": t} for t in ("pid", "mount", "uts", "ipc", "cgroup")]
m = [x for x in c["mounts"] if x["destination"] not in ("/sys", "/sys/fs/cgroup")]
m.append({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "rw"]})
# The host's hierarchies, writable: systemd manages them (a cgroup namespace roots them at the node's cgroup).
fs = "cgroup2" if mode == "v2" else "cgroup"
m.append({"destination": "/sys/fs/cgroup", "type": fs, "source": fs, "options": ["nosuid", "noexec", "nodev", "relatime", "rw"]})
for t in ("/run", "/run/lock", "/tmp"):
    m.append({"destination": t, "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=755"]})
# The engines' storage on tmpfs (an overlayfs upper directory cannot be on the node's overlay).
for t in ("/var/lib/containerd", "/var/lib/containers"):
    m.append({"destination": t, "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=711"]})
m.append({"destination": "/usr/local/bin/rt-under-test", "type": "bind", "source": d + "/bin/rt-under-test", "options": ["bind", "ro"]})
m.append({"destination": "/usr/local/bin/runc", "type": "bind", "source": "/usr/sbin/runc", "options": ["bind", "ro"]})
c["mounts"] = m
c["hostname"] = "node-" + name
json.dump(c, open(d + "/config.json", "w"), indent=1)
EOF
    if ! node_rt run -d --bundle "$d" "$(node_id "$name")" </dev/null >"$d/boot.log" 2>&1; then
        cat "$d/boot.log" >&2
        return 1
    fi
    local i s
    for ((i = 0; i < 120; i++)); do
        s=$(node_exec "$name" systemctl is-system-running 2>/dev/null)
        case $s in running | degraded) break ;; esac
        sleep 0.5
    done
    case $s in
    running) ;;
    degraded) it_log "node $name is degraded: $(node_exec "$name" systemctl --failed --no-legend 2>&1 | tr '\n' ';')" ;;
    *)
        it_log "node $name did not come up: ${s:-no answer}"
        return 1
        ;;
    esac
}

node_exec() {
    local name=$1
    shift
    node_rt exec --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        "$(node_id "$name")" "$@" </dev/null
}

node_stop() {
    local name=$1 d=$W/node-$1 id i
    id=$(node_id "$name")
    if node_rt state "$id" >/dev/null 2>&1; then
        # systemd's "halt" signal: it stops every unit (the nested containers' scopes too).
        node_rt kill "$id" 37 >/dev/null 2>&1
        for ((i = 0; i < 100; i++)); do
            node_rt state "$id" 2>/dev/null | grep -q '"stopped"' && break
            sleep 0.2
        done
        node_rt delete --force "$id" >/dev/null 2>&1
    fi
    mountpoint -q "$d/rootfs" && { umount "$d/rootfs" 2>/dev/null || umount -l "$d/rootfs"; }
    # Whatever the node's systemd or runtimes left in its cgroup, deepest first.
    local c
    for c in $(find /sys/fs/cgroup/*/berth-it-systemd-node/"$name" -depth -type d 2>/dev/null); do
        [ -f "$c/freezer.state" ] && echo THAWED >"$c/freezer.state" 2>/dev/null
        # shellcheck disable=SC2046
        kill -9 $(cat "$c/cgroup.procs" 2>/dev/null) 2>/dev/null
        rmdir "$c" 2>/dev/null
    done
    rmdir /sys/fs/cgroup/*/berth-it-systemd-node 2>/dev/null
    rm -rf "$d"
}
