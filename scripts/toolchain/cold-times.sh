# Sourced by build-k8s.sh and ensure-binaries.sh: how long each binary takes to build cold (empty Go
# caches, 2 cores), in seconds, for the estimates in their progress lines. The figures are the
# "Measured times" tables of scripts/toolchain/README.md, in build-k8s.sh's order (kubectl after
# kube-apiserver reuses most of its compiled packages); change both together. Empty: not measured.
cold_build_seconds() {
  case $1 in
    etcd) echo 64 ;;
    kube-apiserver) echo 322 ;;
    kube-controller-manager) echo 523 ;;
    kube-scheduler) echo 89 ;;
    kubectl) echo 26 ;;
    kubelet) echo 231 ;;
    helm) echo 791 ;;
    *) echo "" ;;
  esac
}

# 754 -> 12m34s
fmt_duration() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }
