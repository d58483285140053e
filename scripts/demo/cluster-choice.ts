// Which cluster `npm start` runs against, from $KUBECONFIG: an existing one, or a local control
// plane. A KUBECONFIG naming only files that do not exist is a mistake to report, not a reason to
// start the (on a first run, long) local build.

export type ClusterChoice =
  /** KUBECONFIG unset or empty: start a local control plane. */
  | { kind: "local" }
  /** At least one file it lists exists (kubectl's rule: the missing ones are skipped). */
  | { kind: "existing"; kubeconfig: string }
  /** Set, but none of the files it lists exists. */
  | { kind: "missing"; kubeconfig: string; paths: string[] };

/** `kubeconfig` is $KUBECONFIG: one path, or several joined by `delimiter` (":" on Linux). */
export function chooseCluster(kubeconfig: string | undefined, exists: (file: string) => boolean, delimiter = ":"): ClusterChoice {
  const paths = (kubeconfig ?? "").split(delimiter).filter((p) => p !== "");
  if (paths.length === 0) return { kind: "local" };
  if (paths.some(exists)) return { kind: "existing", kubeconfig: kubeconfig! };
  return { kind: "missing", kubeconfig: kubeconfig!, paths };
}

/** What `npm start` says, and then exits, when KUBECONFIG names no existing file. */
export function missingKubeconfigMessage(choice: Extract<ClusterChoice, { kind: "missing" }>): string {
  const what = choice.paths.length === 1 ? `${choice.paths[0]} does not exist` : `none of ${choice.paths.join(", ")} exists`;
  return [
    `KUBECONFIG=${choice.kubeconfig}, but ${what}.`,
    "To run against an existing cluster, point KUBECONFIG at its kubeconfig file.",
    "To start a local control plane instead, unset KUBECONFIG (its first run builds etcd, kube-apiserver and kubectl from source: minutes).",
  ].join("\n");
}
