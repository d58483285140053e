#!/bin/sh
# /init of the real-kernel test guest (busybox sh, PID 1). Mounts the basics, the read-only tools
# disk (/dev/vda: node, kmod, the agent, the runner, the test modules) and the persistent disk
# (/dev/vdb) at /var/lib/kpatch, plays kpatch.service (`kpatch-agent load --all`), runs the plan the
# kernel command line names (klp.plan=...) with the guest runner, then powers off.
export PATH=/sbin:/usr/bin:/bin
export HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
# As systemd does on the host: /sys/kernel/security/lockdown is where the agent reads lockdown.
mount -t securityfs securityfs /sys/kernel/security
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
up() { cut -d' ' -f1 /proc/uptime; }
echo "@@BOOT init-start uptime=$(up)"
cmdline=$(cat /proc/cmdline)
# Accelerator probe: the host only wants to know that a guest reaches userspace.
case " $cmdline " in *" klp.probe=1 "*) poweroff -f ;; esac

# Block device and filesystem drivers (Debian builds them as modules): busybox insmod, in order.
while read -r m; do /bin/insmod "$m" 2>/dev/null; done < /boot-modules/list
for i in $(seq 1 200); do [ -b /dev/vdb ] && break; usleep 25000; done
if ! mount -t ext4 -o ro /dev/vda /tools; then echo "@@BOOT tools-missing"; poweroff -f; fi
for d in lib lib64 usr sbin; do ln -s "/tools/$d" "/$d"; done
ln -s /tools/klp /opt/klp
if mount -t ext4 /dev/vdb /var/lib/kpatch; then
  echo "@@BOOT disks-mounted uptime=$(up)"
else
  echo "@@BOOT disk-missing"
fi

# kpatch.service: oneshot `kpatch load --all`, skipped when the command line has kpatch.enable=0.
case " $cmdline " in
  *" kpatch.enable=0 "*) echo skipped > /run/kpatch-service.rc ;;
  *)
    if [ -f /opt/klp/kpatch-agent.mjs ]; then
      start=$(up)
      node /opt/klp/kpatch-agent.mjs --json load --all > /run/kpatch-service.out 2> /run/kpatch-service.err
      echo $? > /run/kpatch-service.rc
      echo "$start $(up)" > /run/kpatch-service.uptime
    else
      echo no-agent > /run/kpatch-service.rc
    fi
    ;;
esac
echo "@@BOOT service-done uptime=$(up)"

plan=
for w in $cmdline; do case "$w" in klp.plan=*) plan=${w#klp.plan=} ;; esac; done
KLP_CMDLINE="$cmdline" node /opt/klp/guest-runner.mjs "$plan"
echo "@@BOOT runner-exit rc=$? uptime=$(up)"
sync
umount /var/lib/kpatch 2>/dev/null
echo "@@BOOT poweroff"
poweroff -f
