#!/bin/sh
# /init of the gears guest image (busybox sh).
#
# Mounts the basics, loads the modules listed in /etc/gears/modules (in order; options for a
# module come from the kernel command line as <module>.<param>=<value>, as modprobe would do),
# sources the flavour's /etc/gears/init.d/*.sh if any, prints GEARS-GUEST-READY, then:
#   - with gears_run set (kernel command line `gears_run="uname -r; nproc"`: parameters without
#     a dot become init's environment), runs it with `sh -c`, prints GEARS-GUEST-RC=<rc> and
#     powers off;
#   - otherwise starts an interactive shell on the console and powers off when it exits.
# The console is kept quiet: under nested KVM every console character is a VM exit.
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
export HOME=/root

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run

# Module options from the kernel command line: "virtio_mmio.device=..." -> insmod ... device=...
cmdline=$(cat /proc/cmdline)
while read -r ko; do
  [ -n "$ko" ] || continue
  name=${ko##*/}
  name=${name%.ko}
  opts=""
  for word in $cmdline; do
    case $word in
      "$name".*=*|"$(echo "$name" | tr _ -)".*=*) opts="$opts ${word#*.}" ;;
    esac
  done
  # shellcheck disable=SC2086 # options are separate words on purpose
  insmod "$ko" $opts 2>/dev/null || echo "guest-init: insmod $name failed"
done < /etc/gears/modules

# Image flavours add setup steps as /etc/gears/init.d/*.sh (e.g. the MPI flavour's hostname,
# lo, Open MPI environment: guest-mpi-init.sh); they are sourced here, in name order. The base
# image has none.
for hook in /etc/gears/init.d/*.sh; do
  # shellcheck source=/dev/null
  [ -f "$hook" ] && . "$hook"
done

echo GEARS-GUEST-READY

if [ -n "${gears_run:-}" ]; then
  cd /root
  sh -c "$gears_run"
  echo "GEARS-GUEST-RC=$?"
else
  echo "guest-init: interactive shell; exit it to power off"
  setsid cttyhack sh -l
fi
sync
poweroff -f
