#!/bin/sh
# Start a command in a file-system sandbox: run by autograder/execution/sandbox.py under
# `unshare --mount --pid --fork [--net] [--user --map-root-user]`, i.e. already in fresh mount and PID
# namespaces. Usage: sandbox.sh READ_ONLY_PATHS WRITABLE_PATHS DEVICES -- COMMAND...  (lists are ':'-separated)
#
# The command sees a new root holding only: the read-only paths (the Python environment, cs_lib, data
# caches, system folders), the writable paths (its working folder, the kernel's runtime folder), a few
# device nodes, a private /tmp and a /proc of its own PID namespace. It then runs without any capability
# (so it can neither mount, nor remount read-only folders writable, nor chroot), with no_new_privs.
set -eu
ro=$1; rw=$2; devices=$3; shift 3
[ "$1" = "--" ] && shift
work=$(pwd)
root=$(mktemp -d "${TMPDIR:-/tmp}/dlcv-sandbox.XXXXXX")
mount -t tmpfs -o mode=755 dlcv-sandbox "$root"
mkdir -p "$root/tmp" "$root/proc" "$root/dev/shm"
mount -t tmpfs -o mode=1777,size=2g dlcv-tmp "$root/tmp"
mount -t tmpfs -o mode=1777 dlcv-shm "$root/dev/shm"
mount -t proc proc "$root/proc"
bind() {  # bind PATH [ro]
  if [ -d "$1" ]; then mkdir -p "$root$1"; else mkdir -p "$(dirname "$root$1")"; : > "$root$1"; fi
  mount --rbind "$1" "$root$1"
  if [ "${2:-}" = ro ]; then mount -o remount,bind,ro "$root$1"; fi
}
IFS=:
for p in $devices; do [ -e "$p" ] && bind "$p"; done
for p in $ro; do [ -e "$p" ] && bind "$p" ro; done
for p in $rw; do [ -e "$p" ] && bind "$p"; done
unset IFS
ln -s /proc/self/fd "$root/dev/fd"
# A private copy of matplotlib's font cache: without it every kernel rebuilds it (a second or more).
if [ -n "${DLCV_SANDBOX_MPLCACHE:-}" ] && [ -d "$DLCV_SANDBOX_MPLCACHE" ]; then
  cp -r "$DLCV_SANDBOX_MPLCACHE" "$root/tmp/matplotlib" 2>/dev/null && export MPLCONFIGDIR=/tmp/matplotlib
fi
unset DLCV_SANDBOX_MPLCACHE
cd "$root"
mkdir .old-root
pivot_root . .old-root
rmdir "/.old-root$root" 2>/dev/null || true  # the host's empty mount point: leave nothing behind in /tmp
umount -l /.old-root
rmdir /.old-root
cd "$work"
exec setpriv --no-new-privs --bounding-set=-all --inh-caps=-all --securebits=+noroot,+noroot_locked -- "$@"
