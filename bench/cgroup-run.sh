#!/usr/bin/env bash
# cgroup-run.sh: runs a command the way the memory-budget benchmarks measure it (docs/benchmarks.md):
# inside a cgroup-v1 memory group limited to LIMIT (the whole process: weights, page cache it
# causes, everything), after dropping the page cache, optionally with reads from the disk holding
# the model throttled to a rate (to reproduce a slower disk). Needs root and the v1 memory (and,
# for --read-bps, blkio) controllers mounted under /sys/fs/cgroup.
#   bench/cgroup-run.sh [--read-bps BYTES_PER_S] [--no-drop] LIMIT_BYTES -- COMMAND...
# Prints the group's peak usage (memory.max_usage_in_bytes) and failcnt on stderr at the end.
set -euo pipefail
bps="" drop=1
while [ $# -gt 0 ]; do
  case "$1" in
    --read-bps) bps="$2"; shift 2 ;;
    --no-drop) drop=0; shift ;;
    *) break ;;
  esac
done
[ $# -ge 3 ] && [ "$2" = "--" ] || { echo "usage: $0 [--read-bps B] [--no-drop] LIMIT_BYTES -- CMD..." >&2; exit 2; }
limit="$1"; shift 2
mem=/sys/fs/cgroup/memory/arbor-bench-$$
mkdir "$mem"
trap 'rmdir "$mem" 2>/dev/null || true; [ -n "$bps" ] && rmdir "$blk" 2>/dev/null || true' EXIT
echo "$limit" > "$mem/memory.limit_in_bytes"
[ -e "$mem/memory.memsw.limit_in_bytes" ] && echo "$limit" > "$mem/memory.memsw.limit_in_bytes" 2>/dev/null || true
if [ -n "$bps" ]; then
  blk=/sys/fs/cgroup/blkio/arbor-bench-$$
  mkdir "$blk"
  # every whole disk (major:minor of /sys/block/*) gets the read limit
  for d in /sys/block/*; do
    [ -e "$d/dev" ] && [ ! -e "$d/partition" ] && echo "$(cat "$d/dev") $bps" > "$blk/blkio.throttle.read_bps_device" 2>/dev/null || true
  done
fi
if [ "$drop" = 1 ]; then sync; echo 1 > /proc/sys/vm/drop_caches; fi
set +e
(
  echo $BASHPID > "$mem/cgroup.procs"
  [ -n "$bps" ] && echo $BASHPID > "$blk/cgroup.procs"
  exec "$@"
)
rc=$?
set -e
echo "cgroup: peak $(( $(cat "$mem/memory.max_usage_in_bytes") / 1048576 )) MiB of $(( limit / 1048576 )) MiB, failcnt $(cat "$mem/memory.failcnt")" >&2
# move nothing back: the group is empty once the command has exited
exit $rc
