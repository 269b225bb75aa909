#!/usr/bin/env bash
# stage-rootfs.sh BINARY ROOTFS [NAME]: copy BINARY to ROOTFS/usr/local/bin/NAME
# (default: its own name) plus every library `ldd` lists for it, including the
# dynamic loader, at the same paths, so a `FROM scratch` image can run it.
set -euo pipefail
bin=$1 rootfs=$2 name=${3:-$(basename "$1")}
[[ -x "$bin" ]] || { echo "stage-rootfs: $bin is not an executable" >&2; exit 1; }
mkdir -p "$rootfs/usr/local/bin"
cp -L "$bin" "$rootfs/usr/local/bin/$name"
# Lines look like `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)` or
# `/lib64/ld-linux-x86-64.so.2 (0x...)`; linux-vdso has no file.
libs=$(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | sort -u)
[[ -n "$libs" ]] || { echo "stage-rootfs: ldd listed no libraries for $bin" >&2; exit 1; }
grep -q 'ld-linux' <<<"$libs" || { echo "stage-rootfs: no dynamic loader in ldd $bin" >&2; exit 1; }
for lib in $libs; do
  mkdir -p "$rootfs$(dirname "$lib")"
  cp -L "$lib" "$rootfs$lib"
done
echo "staged $name: $(wc -l <<<"$libs") libraries"
