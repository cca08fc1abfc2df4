#!/usr/bin/env bash
# Builds Berth and runs a real container from an example busybox bundle it prepares.
# Usage (as root, on Debian): scripts/demo.sh            (bundle in /tmp/berth-example)
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup-deps.sh
# shellcheck disable=SC1091
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
cargo build --release
berth=$PWD/target/x86_64-unknown-linux-gnu/release/berth  # .cargo/config.toml names the target

bundle=${BUNDLE:-/tmp/berth-example}
rm -rf "$bundle"
mkdir -p "$bundle/rootfs"/{bin,proc,sys,dev,etc,tmp,root}
cp /bin/busybox "$bundle/rootfs/bin/busybox"
for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$bundle/rootfs/bin/$applet"
done
echo 'root:x:0:0:root:/root:/bin/sh' > "$bundle/rootfs/etc/passwd"
echo 'root:x:0:' > "$bundle/rootfs/etc/group"

# The defaults of `berth spec` (those of `runc spec`), made non-interactive.
"$berth" spec --bundle "$bundle"
sed -i -e 's/"terminal": true/"terminal": false/' \
    -e 's|^      "sh"$|      "sh", "-c", "echo Hello from a Berth container; hostname; id; ps; grep -E ^Cap /proc/self/status"|' \
    "$bundle/config.json"

echo "--- berth run --bundle $bundle demo"
"$berth" --root /run/berth run --bundle "$bundle" "demo-$$"
