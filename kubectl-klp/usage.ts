export const USAGE = `kubectl klp: the kernel live patches of a cluster, as an admin asks about them.

Usage:
  kubectl klp status [PATCH] [-o json|yaml]   each node's phase, kernel release, taint, module and since when
  kubectl klp cves [CVE] [--exposed] [-o json|yaml]
                                               per CVE in the patches' spec.cves: nodes fixed (the patch is
                                               live there), exposed (applicable, not live), not applicable;
                                               --exposed lists each exposed node and where its patches stand
  kubectl klp nodes [NODE...] [-o json|yaml]   per node: the patches live in its kernel, their CVEs, its taint
  kubectl klp retry PATCH [--node NODE]        set spec.retry: every node where PATCH is Failed or Stalled tries
                                               again (there is no per-node retry; --node checks that NODE is one)
  kubectl klp pause PATCH                      set spec.rollout.paused: no new node is admitted
  kubectl klp resume PATCH                     clear spec.rollout.paused

Options:
  --kubeconfig PATH   the kubeconfig to use (default: $KUBECONFIG, else ~/.kube/config)
  -o, --output        json or yaml instead of a table (read commands)
  -h, --help          this text
`;
