# shellcheck shell=bash
# What the scripts that run inside a systemd node share (sourced; they set LABEL first, e.g.
# "systemd (berth)"): one `PASS LABEL: what` / `FAIL LABEL: what` line per check, with the
# failure's detail indented below it.
pass() { echo "PASS $LABEL: $1"; }
fail() {
    echo "FAIL $LABEL: $1"
    [ -n "${2:-}" ] && printf '%s\n' "$2" | sed 's/^/    | /'
}
# check WHAT CMD…: passes when CMD succeeds; its output is the failure's detail.
check() {
    local what=$1 out
    shift
    if out=$("$@" 2>&1); then pass "$what"; else fail "$what" "$out"; fi
}
# eq WHAT GOT WANT
eq() {
    if [ "$2" = "$3" ]; then pass "$1"; else fail "$1" "got: $2"$'\n'"want: $3"; fi
}
# gone UNIT CGROUP: the unit (a name or a pattern) is not loaded, waiting up to 5 s, and its
# cgroup (relative to each hierarchy, a pattern too) is in no hierarchy.
gone() {
    local i left
    for i in $(seq 1 50); do
        systemctl list-units --all --no-legend "$1" | grep -q . || break
        sleep 0.1
    done
    if systemctl list-units --all --no-legend "$1" | grep -q .; then
        systemctl list-units --all --no-legend "$1"
        return 1
    fi
    # shellcheck disable=SC2086 # $2 may be a pattern
    left=$(ls -d /sys/fs/cgroup/*/$2 2>/dev/null)
    [ -z "$left" ] || { echo "left: $left"; return 1; }
}
