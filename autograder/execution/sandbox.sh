#!/bin/sh
# Start a command in a file-system sandbox: run by autograder/execution/sandbox.py under
# `unshare --mount --pid --uts --ipc --fork [--net] [--user --map-root-user]`, i.e. already in fresh mount,
# PID, UTS and IPC namespaces. Usage: sandbox.sh READ_ONLY_PATHS WRITABLE_PATHS DEVICES -- COMMAND...
# (lists are ':'-separated). Settings come as environment variables, unset before COMMAND starts:
#   DLCV_SANDBOX_WORK       the working folder inside the sandbox (a tmpfs of its own; COMMAND's cwd and HOME)
#   DLCV_SANDBOX_SEED       a grader-made host folder whose plain files are copied into the working folder
#   DLCV_SANDBOX_KIT        the host's cs_lib folder, copied (no bytecode) into a read-only tmpfs at /kit/cs_lib:
#                           a copy, not a bind mount, so that /proc/self/mountinfo does not name the checkout
#   DLCV_SANDBOX_MASK       ':'-separated files shown empty (an editable install's files that name the checkout)
#   DLCV_SANDBOX_TMP_SIZE, DLCV_SANDBOX_SHM_SIZE, DLCV_SANDBOX_WORK_SIZE   tmpfs sizes in bytes
#   DLCV_SANDBOX_UID        the unprivileged uid (and gid) COMMAND runs as; empty: keep the caller's
#   DLCV_SANDBOX_NPROC      RLIMIT_NPROC (processes and threads of that uid)
#   DLCV_SANDBOX_FSIZE      RLIMIT_FSIZE (largest file COMMAND may write)
#   DLCV_SANDBOX_MPLCACHE   matplotlib's font cache, copied privately
#   DLCV_SANDBOX_ENTER_ONLY non-empty: stop after pivot_root, without running COMMAND or dropping privileges. The
#                           caller (a warm kernel template's child, autograder/execution/kernel_template.py) shares
#                           this shell's mount namespace, so pivot_root moves its root too; it then drops its
#                           privileges itself, as the end of this script would.
#
# The command sees a new root holding only: the read-only paths (the Python environment, data caches,
# system folders), cs_lib, the writable paths (the kernel's runtime folder for its sockets), a few device
# nodes, a private /tmp, /dev/shm and working folder (each a tmpfs with a size), and a /proc of its own PID
# namespace whose /proc/sys and /proc/sysrq-trigger are read-only. It then runs as the unprivileged uid
# (when the caller is root), without any capability, with no_new_privs and the rlimits above.
set -eu
ro=$1; rw=$2; devices=$3; shift 3
[ "$1" = "--" ] && shift
uid=${DLCV_SANDBOX_UID:-}
owner=""
[ -n "$uid" ] && owner=",uid=$uid,gid=$uid"
root=$(mktemp -d "${TMPDIR:-/tmp}/dlcv-sandbox.XXXXXX")
mount -t tmpfs -o mode=755,size=4m dlcv-sandbox "$root"
work=${DLCV_SANDBOX_WORK:-/home/student}
mkdir -p "$root/tmp" "$root/proc" "$root/dev/shm" "$root$work" "$root/kit"
mount -t tmpfs -o "mode=1777,size=${DLCV_SANDBOX_TMP_SIZE:-536870912}" dlcv-tmp "$root/tmp"
mount -t tmpfs -o "mode=1777,size=${DLCV_SANDBOX_SHM_SIZE:-268435456}" dlcv-shm "$root/dev/shm"
mount -t tmpfs -o "mode=700,size=${DLCV_SANDBOX_WORK_SIZE:-268435456}$owner" dlcv-work "$root$work"
mount -t proc proc "$root/proc"
for p in sys sysrq-trigger; do
  if [ -e "$root/proc/$p" ]; then
    mount --bind "$root/proc/$p" "$root/proc/$p" && mount -o remount,bind,ro "$root/proc/$p"
  fi
done
bind() {  # bind HOST_PATH [ro [INSIDE_PATH]]
  inside=$root${3:-$1}
  if [ -d "$1" ]; then mkdir -p "$inside"; else mkdir -p "$(dirname "$inside")"; : > "$inside"; fi
  mount --rbind "$1" "$inside"
  if [ "${2:-}" = ro ]; then mount -o remount,bind,ro "$inside"; fi
}
IFS=:
for p in $devices; do
  [ -e "$p" ] || continue
  case "$p" in /sys) bind "$p" ro ;; *) bind "$p" ;; esac
done
for p in $ro; do [ -e "$p" ] && bind "$p" ro; done
for p in $rw; do
  [ -e "$p" ] || continue
  bind "$p"
  if [ -n "$uid" ]; then  # a fresh grader-made folder: the folder and the files the grader put in it
    chown -h "$uid:$uid" "$p"
    for f in "$p"/*; do [ -f "$f" ] && [ ! -L "$f" ] && chown -h "$uid:$uid" "$f"; done
  fi
done
unset IFS
if [ -n "${DLCV_SANDBOX_KIT:-}" ]; then
  mount -t tmpfs -o mode=755,size=64m dlcv-kit "$root/kit"
  cp -R "$DLCV_SANDBOX_KIT" "$root/kit/cs_lib"
  find "$root/kit" -name __pycache__ -type d -prune -exec rm -rf {} +
  mount -o remount,ro "$root/kit"
fi
: > "$root/.empty"
IFS=:
for f in ${DLCV_SANDBOX_MASK:-}; do [ -f "$root$f" ] && mount --bind "$root/.empty" "$root$f"; done
unset IFS
if [ -n "${DLCV_SANDBOX_SEED:-}" ] && [ -d "$DLCV_SANDBOX_SEED" ]; then
  # Plain files and folders only (cp -R copies links as links; the seed is the grader's own copy).
  cp -R "$DLCV_SANDBOX_SEED/." "$root$work/"
  [ -n "$uid" ] && chown -R -h "$uid:$uid" "$root$work"
fi
ln -s /proc/self/fd "$root/dev/fd"
# A private copy of matplotlib's font cache: without it every kernel rebuilds it (a second or more).
if [ -n "${DLCV_SANDBOX_MPLCACHE:-}" ] && [ -d "$DLCV_SANDBOX_MPLCACHE" ]; then
  cp -r "$DLCV_SANDBOX_MPLCACHE" "$root/tmp/matplotlib" 2>/dev/null && export MPLCONFIGDIR=/tmp/matplotlib
  [ -n "$uid" ] && chown -R -h "$uid:$uid" "$root/tmp/matplotlib"
fi
hostname sandbox 2>/dev/null || true  # the UTS namespace is ours: the host's name is not shown
nproc_limit=${DLCV_SANDBOX_NPROC:-512}
fsize_limit=${DLCV_SANDBOX_FSIZE:-268435456}
enter_only=${DLCV_SANDBOX_ENTER_ONLY:-}
unset DLCV_SANDBOX_ENTER_ONLY DLCV_SANDBOX_MPLCACHE DLCV_SANDBOX_WORK DLCV_SANDBOX_SEED DLCV_SANDBOX_KIT DLCV_SANDBOX_MASK DLCV_SANDBOX_TMP_SIZE \
  DLCV_SANDBOX_SHM_SIZE DLCV_SANDBOX_WORK_SIZE DLCV_SANDBOX_UID DLCV_SANDBOX_NPROC DLCV_SANDBOX_FSIZE
cd "$root"
mkdir .old-root
pivot_root . .old-root
rmdir "/.old-root$root" 2>/dev/null || true  # the host's empty mount point: leave nothing behind in /tmp
umount -l /.old-root
rmdir /.old-root
mount -o remount,ro,bind / 2>/dev/null || true
[ -n "$enter_only" ] && exit 0
cd "$work"
export HOME="$work"
if [ -n "$uid" ]; then
  exec prlimit --nproc="$nproc_limit" --fsize="$fsize_limit" -- \
    setpriv --reuid="$uid" --regid="$uid" --clear-groups --no-new-privs --bounding-set=-all --inh-caps=-all -- "$@"
fi
# Without a uid of its own (a user namespace as an ordinary user) RLIMIT_NPROC would count every process of
# that user on the machine, so only the file size is limited here.
exec prlimit --fsize="$fsize_limit" -- \
  setpriv --no-new-privs --bounding-set=-all --inh-caps=-all --securebits=+noroot,+noroot_locked -- "$@"
