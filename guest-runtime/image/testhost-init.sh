#!/bin/sh
# /init of the KVM test host image (L1; busybox sh). Started by tests/testhost/gears-testhost.
#
# Loads kvm-amd (real /dev/kvm on QEMU/TCG's emulated SVM) and the virtio-pci + 9p stack,
# mounts the host's / read-only at /host (9p, cache=loose: exec is ~9x faster; the host must
# not change files while this runs), the control share at /ctl, the writable shares listed in
# /ctl/shares ("TAG PATH" lines) at /host/PATH, a tmpfs on /host/tmp, and runs /ctl/job.sh
# with the host's bash chrooted into /host. The job's exit status goes to /ctl/rc and to a
# GEARS-TESTHOST-RC=<rc> console line; then the machine powers off.
export PATH=/sbin:/bin:/usr/sbin:/usr/bin

say() { echo "testhost-init: $*"; }
fail() { say "$*"; echo "GEARS-TESTHOST-FAILED"; sync; poweroff -f; }

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

while read -r ko; do
  [ -n "$ko" ] || continue
  insmod "$ko" 2>/dev/null || say "insmod ${ko##*/} failed"
done < /etc/gears/modules

hostname gears-testhost
ip link set lo up 2>/dev/null

p9="trans=virtio,version=9p2000.L,msize=512000"
mkdir -p /host /ctl /hosttmp
mount -t 9p -o "$p9,cache=loose,ro" host /host || fail "cannot mount the host share"
mount -t 9p -o "$p9" gearsctl /ctl || fail "cannot mount the control share"
[ -f /ctl/job.sh ] || {
  say "no /ctl/job.sh: interactive shell (host / at /host); exit to power off"
  setsid cttyhack sh -l
  poweroff -f
}

# Scratch and the usual kernel file systems inside the chroot. /tmp is a writable tmpfs
# whose top-level entries are the host's /tmp entries, bind-mounted read-only like the rest
# of /host: a checkout, build or guest image under /tmp stays reachable. `.gears-*` names
# (the job script, HOME) are the test host's own.
mount -o bind /host/tmp /hosttmp
mount -t tmpfs -o mode=1777 tmpfs /host/tmp || fail "cannot mount tmpfs on /host/tmp"
for e in /hosttmp/* /hosttmp/.[!.]* /hosttmp/..?*; do
  n=${e#/hosttmp/}
  case $n in .gears-*) continue ;; esac
  if [ -L "$e" ]; then
    ln -s "$(readlink "$e")" "/host/tmp/$n"
  elif [ -d "$e" ]; then
    mkdir "/host/tmp/$n" && mount -o bind "$e" "/host/tmp/$n"
  elif [ -f "$e" ]; then
    : > "/host/tmp/$n" && mount -o bind "$e" "/host/tmp/$n"
  fi
done
mount -t tmpfs tmpfs /host/run
mount -t proc proc /host/proc
mount -t sysfs sysfs /host/sys
mount -t devtmpfs devtmpfs /host/dev
mkdir -p /host/dev/pts /host/dev/shm
mount -t devpts devpts /host/dev/pts 2>/dev/null
mount -t tmpfs tmpfs /host/dev/shm 2>/dev/null

# Writable shares: default caching (no loose write-back: nothing may be lost at poweroff).
if [ -f /ctl/shares ]; then
  while read -r tag path; do
    [ -n "$tag" ] || continue
    mkdir -p "/host$path" 2>/dev/null
    mount -t 9p -o "$p9" "$tag" "/host$path" || fail "cannot mount writable share $path"
  done < /ctl/shares
fi

cp /ctl/job.sh /host/tmp/.gears-job.sh
# Raw output: no \r\n translation on the serial console.
stty -onlcr 2>/dev/null
echo "GEARS-TESTHOST-START"
chroot /host /bin/bash /tmp/.gears-job.sh
rc=$?
echo "$rc" > /ctl/rc
sync
echo "GEARS-TESTHOST-RC=$rc"
poweroff -f
