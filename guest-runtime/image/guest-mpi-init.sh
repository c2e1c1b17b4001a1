# shellcheck shell=sh
# /etc/gears/init.d/50-mpi.sh of the MPI image flavour (guest-mpi.cpio; build-guest-image-mpi):
# sourced by /init (guest-init.sh, busybox sh) before GEARS-GUEST-READY, so the gears_run script
# and everything it starts (dropbear, mpirun) inherit what it exports.
#
# Kernel command line parameters (without a dot they are init's environment):
#   gears_hostname=NAME   the hostname (mpirun compares it with --host names; PMIx needs one);
#                         default: the name /etc/hosts gives gears_ip's address, else
#                         /etc/hostname (gears-guest)
#   gears_ip=ADDR/LEN     eth0 up with this address (e.g. 10.0.0.1/24: vm-a in /etc/hosts);
#                         Open MPI's TCP BTL and out-of-band channel then use eth0 only
#   gears_sshd=1          start dropbear (port 22, keys only, the image's fixed host key;
#                         log in /run/dropbear.log)
# Always: lo up (Open MPI's PMIx server listens on it), a tmpfs on /dev/shm, and the Open MPI
# run-as-root environment (also in /etc/profile for login shells).

ip link set lo up
mount -t tmpfs -o mode=1777 tmpfs /dev/shm

if [ -n "${gears_ip:-}" ]; then
  ip link set eth0 up && ip addr add "$gears_ip" dev eth0 || echo "guest-mpi-init: cannot configure eth0 ($gears_ip)"
fi
if [ -z "${gears_hostname:-}" ] && [ -n "${gears_ip:-}" ]; then
  while read -r addr name _; do
    [ "$addr" = "${gears_ip%/*}" ] && { gears_hostname=$name; break; }
  done < /etc/hosts
fi
[ -n "${gears_hostname:-}" ] || read -r gears_hostname < /etc/hostname
hostname "$gears_hostname"

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
if [ -n "${gears_ip:-}" ]; then
  export OMPI_MCA_btl_tcp_if_include=eth0 OMPI_MCA_oob_tcp_if_include=eth0
fi

if [ "${gears_sshd:-}" = 1 ]; then
  # -e: sessions get this environment (PATH, OMPI_*); -s: no passwords; -E: log to stderr,
  # here /run/dropbear.log (a console line per connection costs under emulation).
  dropbear -e -s -E -r /etc/dropbear/dropbear_ed25519_host_key -p 22 -P /run/dropbear.pid \
    2>> /run/dropbear.log || echo "guest-mpi-init: dropbear failed (/run/dropbear.log)"
fi
