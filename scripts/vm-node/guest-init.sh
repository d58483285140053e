#!/bin/sh
# /init of the VM node (busybox sh, PID 1), built by scripts/vm-node/build-guest.sh.
# Disks, in QEMU's order: vda = sys.img (read-only: containerd, runc, CNI plugins, kubelet, image
# tarballs, the agent image's root filesystem), vdb = the node's /var/lib/kpatch (raw ext4, survives
# reboots), vdc = the node's /var/lib (containerd and kubelet state; images already imported when
# the host seeded it), vdd = this node's configuration (read-only: node name, the kubelet's
# kubeconfig, the cluster CA), mounted at /etc/klp.
# Serial ports: ttyS0 console (@@BOOT / @@LP / @@CMD / @@SVC markers), ttyS1 control channel
# (read-only queries; reboot and poweroff, as the machine's owner would; loading and unloading the
# node's own fixture modules, the host's drivers that a test livepatch patches), ttyS2 pod logs.
# Boot order, as on a systemd host: mounts -> kpatch.service (`kpatch-agent load --all` of what is
# staged for the running release, from the agent image's files) -> network -> containerd (images
# imported when missing) -> kubelet.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t tmpfs -o mode=0755 tmpfs /run
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=0755 tmpfs /var/log
# The kernel's command line, read before any livepatch can change what /proc/cmdline prints.
cmdline=$(cat /proc/cmdline)
RELEASE=$(cat /proc/sys/kernel/osrelease)
up() { cut -d' ' -f1 /proc/uptime; }
mark() { echo "@@BOOT $1 uptime=$(up)${2:+ $2}"; }
mark init-start "boot_id=$(cat /proc/sys/kernel/random/boot_id) release=$RELEASE date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"

# --- livepatch monitor: every change of /sys/kernel/livepatch (@@LP), and of what /proc/cmdline
# prints (@@CMD: the test livepatches replace it), from the first second of the boot.
# Shell builtins only (a fork costs milliseconds of emulated CPU): read, not cat.
lp_monitor() {
  prev=unset
  prev_cmd=unset
  while :; do
    c=
    read -r c < /proc/cmdline
    if [ "$c" != "$prev_cmd" ]; then
      read -r u _ < /proc/uptime
      echo "@@CMD uptime=$u text=$c"
      prev_cmd=$c
    fi
    cur=""
    for d in /sys/kernel/livepatch/*; do
      [ -d "$d" ] || continue
      e=; t=
      read -r e < "$d/enabled" 2>/dev/null
      read -r t < "$d/transition" 2>/dev/null
      cur="$cur ${d##*/}:$e:$t"
    done
    if [ "$cur" != "$prev" ]; then
      read -r u _ < /proc/uptime
      echo "@@LP uptime=$u state=[${cur# }]"
      prev=$cur
    fi
    usleep 300000
  done
}
lp_monitor &

# --- modules and disks
while read -r m; do insmod "$m" 2>/dev/null; done < /boot-modules/list
for i in $(seq 1 400); do [ -b /dev/vdd ] && break; usleep 25000; done
mkdir -p /sysd
if ! mount -t ext4 -o ro /dev/vda /sysd; then echo "@@BOOT sys-disk-missing"; poweroff -f; fi
ln -s /sysd/usr /usr
ln -s /sysd/usr/lib /lib
ln -s /sysd/lib64 /lib64
mount -t ext4 /dev/vdc /var/lib || { echo "@@BOOT var-disk-missing"; poweroff -f; }
# CNI's cache of the sandboxes' network results (libcni's /var/lib/cni) lives for one boot, as the
# network namespaces it describes do. On the disk, a kernel panic could leave a result file written
# less than ~30 s before empty (delayed allocation), and libcni then failed every StopPodSandbox
# ("decoding version from network config: unexpected end of JSON input"): the kubelet never got
# the agent's pod running again after the crash.
mkdir -p /var/lib/cni
mount -t tmpfs -o mode=0755 tmpfs /var/lib/cni
mkdir -p /etc/klp
mount -t ext4 -o ro /dev/vdd /etc/klp || { echo "@@BOOT config-disk-missing"; poweroff -f; }
mkdir -p /var/lib/kpatch
mount -t ext4 /dev/vdb /var/lib/kpatch || { echo "@@BOOT kpatch-disk-missing"; poweroff -f; }
mkdir -p /sys/fs/cgroup
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mark disks-mounted

CONFIG=/etc/klp
NODE=$(cat "$CONFIG/node-name")
hostname "$NODE"
[ -s /var/lib/machine-id ] || tr -d '-' < /proc/sys/kernel/random/uuid > /var/lib/machine-id
cp /var/lib/machine-id /etc/machine-id
printf '127.0.0.1 localhost\n10.0.2.15 %s\n' "$NODE" > /etc/hosts
# No name server is reachable (restrict=on); pods fall back to this file.
printf 'nameserver 127.0.0.1\noptions ndots:1\n' > /etc/resolv.conf

# --- control channel (ttyS1): "<id> <command> [arg]" lines in, "@@R <id> ..." lines out.
state() {
  echo "uptime=$(up)"
  echo "boot_id=$(cat /proc/sys/kernel/random/boot_id)"
  echo "release=$(cat /proc/sys/kernel/osrelease)"
  echo "cmdline=$(cat /proc/cmdline)"
  echo "tainted=$(cat /proc/sys/kernel/tainted)"
  for d in /sys/kernel/livepatch/*; do
    [ -d "$d" ] && echo "livepatch=${d##*/} enabled=$(cat "$d/enabled") transition=$(cat "$d/transition")"
  done
  for d in /sys/module/*; do
    [ -f "$d/taint" ] || continue
    t=$(cat "$d/taint")
    case $t in *K*) echo "module=${d##*/} refcnt=$(cat "$d/refcnt" 2>/dev/null) taint=$t" ;; esac
  done
  # Modules (release directories and .loading) as staged=; the agent's record as record=, below.
  find /var/lib/kpatch -mindepth 1 ! -name lost+found ! -path '/var/lib/kpatch/lost+found/*' ! -path /var/lib/kpatch/.kpatch-agent.json 2>/dev/null | sort | while read -r f; do
    if [ -f "$f" ]; then echo "staged=$f sha256=$(sha256sum "$f" | cut -d' ' -f1)"; else echo "stageddir=$f"; fi
  done
  # The agent's record of what it put on the host, on one line.
  [ -f /var/lib/kpatch/.kpatch-agent.json ] && echo "record=$(tr -d '\n' < /var/lib/kpatch/.kpatch-agent.json)"
  dmesg | grep 'livepatch' | sed 's/^/dmesg=/'
}
# The node's own modules (drivers), which the host's owner loads and unloads: only the fixtures
# on the configuration disk, by name.
fixture() {
  case $2 in ''|*[!a-z0-9_]*) echo "bad fixture name $2"; return 1 ;; esac
  [ -f "$CONFIG/fixtures/$2.ko" ] || { echo "no fixture $2"; return 1; }
  case $1 in
    load) insmod "$CONFIG/fixtures/$2.ko" 2>&1 && echo "rc=0" || echo "rc=$?" ;;
    unload) rmmod "$2" 2>&1 && echo "rc=0" || echo "rc=$?" ;;
    *) echo "bad fixture op $1"; return 1 ;;
  esac
  grep "^$2 " /proc/modules | sed 's/^/module=/'
}
shutdown_node() {
  mark "$1-start"
  kill -TERM $(pidof kubelet) 2>/dev/null
  for i in $(seq 1 50); do pidof kubelet >/dev/null || break; usleep 100000; done
  kill -TERM -1 2>/dev/null
  sleep 2
  kill -KILL -1 2>/dev/null
  sync
  # Containers' overlay mounts sit on /var/lib: take them down, then the disks.
  grep -E ' /(var/lib|run)/' /proc/mounts | cut -d' ' -f2 | sort -r | while read -r m; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null; done
  mount -o remount,ro /var/lib/kpatch 2>/dev/null
  umount /var/lib/kpatch 2>/dev/null
  mount -o remount,ro /var/lib 2>/dev/null
  sync
  mark "$1-now"
  if [ "$1" = reboot ]; then reboot -f; else poweroff -f; fi
}
control() {
  stty -F /dev/ttyS1 raw -echo 2>/dev/null
  exec 3<>/dev/ttyS1
  while read -r id cmd arg <&3; do
    echo "@@R $id ACK" >&3
    case $cmd in
      ping) out=pong ;;
      state) out=$(state 2>&1) ;;
      log)
        case $arg in
          kubelet) out=$(tail -n 400 /var/log/kubelet.log 2>&1) ;;
          containerd) out=$(tail -n 200 /var/log/containerd.log 2>&1) ;;
          kpatch-service) out=$(cat /run/kpatch-service.out /run/kpatch-service.err 2>&1) ;;
          dmesg) out=$(dmesg 2>&1 | tail -n 200) ;;
          pods) out=$(for f in /var/log/pods/*/*/*.log; do [ -f "$f" ] && { echo "==> $f"; tail -n 200 "$f"; }; done 2>&1) ;;
          *) out="unknown log $arg" ;;
        esac ;;
      fixture) out=$(fixture ${arg%% *} ${arg#* } 2>&1) ;;
      sh)
        # Development only: the host passes klp.debug=1 when KLP_VM_NODE_DEBUG=1; the suite never does.
        case " $cmdline " in *" klp.debug=1 "*) out=$(sh -c "$arg" 2>&1) ;; *) out="sh is disabled" ;; esac ;;
      reboot|poweroff) echo "@@R $id END" >&3; shutdown_node "$cmd" ;;
      *) out="unknown command $cmd" ;;
    esac
    { printf '%s\n' "$out" | sed "s/^/@@R $id | /"; echo "@@R $id END"; } >&3
  done
}
control &

# --- kpatch.service: `kpatch load --all`, skipped when the command line says kpatch.enable=0.
# The agent image's CLI in a chroot of the agent image's files, the host's /proc, /sys and
# /var/lib/kpatch under /host exactly as the agent pod sees them.
case " $cmdline " in
  *" kpatch.enable=0 "*) echo skipped > /run/kpatch-service.rc ;;
  *)
    A=/sysd/agent-root
    mount -t proc proc "$A/proc"
    mount --bind /sys "$A/sys"
    mount --bind /dev "$A/dev"
    mount -t tmpfs tmpfs "$A/tmp"
    mount --bind /proc "$A/host/proc"
    mount --bind /sys "$A/host/sys"
    mount --bind /var/lib/kpatch "$A/host/var/lib/kpatch"
    mark kpatch-service-start
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin chroot "$A" \
      node /app/kpatch-agent.mjs --host-root /host --json --log-level info load --all > /run/kpatch-service.out 2> /run/kpatch-service.err
    echo $? > /run/kpatch-service.rc
    for m in host/var/lib/kpatch host/sys host/proc tmp dev sys proc; do umount "$A/$m" 2>/dev/null || umount -l "$A/$m"; done
    ;;
esac
mark kpatch-service-done "rc=$(cat /run/kpatch-service.rc)"
echo "@@SVC $(tr -d '\n' < /run/kpatch-service.out 2>/dev/null)"

# --- network: QEMU's user network (10.0.0.0/16, restrict=on). 10.0.0.1:443 is forwarded to the API
# server. Pods get addresses of 10.0.128.0/24 on veth pairs (CNI ptp) and reach 10.0.0.1 through
# this host: forwarding, plus proxy ARP on eth0 so QEMU can send the replies back.
ip link set lo up
ip link set eth0 up
ip addr add 10.0.2.15/16 dev eth0
ip route add default via 10.0.0.2
echo 1 > /proc/sys/net/ipv4/ip_forward
echo 1 > /proc/sys/net/ipv4/conf/eth0/proxy_arp
mkdir -p /etc/cni/net.d
cat > /etc/cni/net.d/10-klp.conflist <<'EOF'
{"cniVersion": "1.0.0", "name": "klp", "plugins": [
  {"type": "ptp", "ipMasq": false, "mtu": 1500,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.0.128.0/24", "gateway": "10.0.128.1"}]],
            "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "/run/cni-ipam"}},
  {"type": "loopback"}
]}
EOF
mark network-up

# --- containerd
PAUSE=$(cat /sysd/images/pause.names)
mkdir -p /etc/containerd /run/containerd
cat > /etc/containerd/config.toml <<EOF
version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.internal.v1.tracing", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "/run/containerd/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        # The guest's root is the initramfs: runc cannot pivot_root out of it.
        NoPivotRoot = true
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "/etc/cni/net.d"
  # The test's registry (test/support/registry.ts), which QEMU forwards 10.0.6.1:5000 to: plain
  # HTTP, on a network that never leaves the machine. Module images are pulled from it.
  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."10.0.6.1:5000"]
    endpoint = ["http://10.0.6.1:5000"]
EOF
mark containerd-start
containerd --config /etc/containerd/config.toml > /var/log/containerd.log 2>&1 &
for i in $(seq 1 600); do ctr version >/dev/null 2>&1 && break; usleep 100000; done
have=$(ctr -n k8s.io images ls -q 2>/dev/null)
for set in pause apps; do
  missing=
  for n in $(cat "/sysd/images/$set.names"); do echo "$have" | grep -qxF "$n" || missing=1; done
  if [ -n "$missing" ]; then
    t0=$(up)
    if ctr -n k8s.io images import --snapshotter overlayfs "/sysd/images/$set.tar" > /run/import-$set.log 2>&1; then
      mark "imported-$set" "from=$t0"
    else
      echo "@@BOOT import-failed set=$set $(tail -n 3 /run/import-$set.log | tr '\n' ' ')"
    fi
  fi
done
mark containerd-ready

# --- kubelet, as system:node:$NODE (client certificate in the kubeconfig the host wrote)
mkdir -p /etc/kubernetes /var/lib/kubelet
cat > /etc/kubernetes/kubelet.yaml <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: $CONFIG/ca.crt}
authorization: {mode: AlwaysAllow}
cgroupDriver: cgroupfs
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
failCgroupV1: false
localStorageCapacityIsolation: false
containerRuntimeEndpoint: unix:///run/containerd/containerd.sock
resolvConf: /etc/resolv.conf
serializeImagePulls: false
registerNode: true
nodeStatusUpdateFrequency: 10s
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "1Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
EOF
mark kubelet-start
kubelet --config=/etc/kubernetes/kubelet.yaml --kubeconfig="$CONFIG/kubelet.kubeconfig" \
  --hostname-override="$NODE" --node-ip=10.0.2.15 --root-dir=/var/lib/kubelet --v=1 \
  > /var/log/kubelet.log 2>&1 &

# --- pod logs to ttyS2, one tail per container log file as they appear.
stty -F /dev/ttyS2 raw -echo 2>/dev/null
tailed=" "
while :; do
  for f in /var/log/pods/*/*/*.log; do
    [ -f "$f" ] || continue
    case $tailed in *" $f "*) continue ;; esac
    tailed="$tailed$f "
    tag=${f#/var/log/pods/}
    tag=${tag%/*}
    # A shell loop, not sed: every line reaches the port at once (sed's output to the port was
    # block-buffered and held lines back).
    (tail -n +1 -F "$f" 2>/dev/null | while IFS= read -r l; do printf '%s %s\n' "$tag" "$l"; done > /dev/ttyS2) &
  done
  sleep 2
done
