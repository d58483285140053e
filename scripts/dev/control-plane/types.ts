// The public shape of a local control plane: what the owner of its processes can do
// (ControlPlane) and what any other process that attaches to it can do (ControlPlaneClient).

export interface ControlPlaneOptions {
  /** Working directory (certs, etcd data, logs, kubeconfigs). Default: a fresh temp dir. */
  dir?: string;
  /** Start kube-controller-manager + kube-scheduler. Default true. */
  controllers?: boolean;
  /** Default 10.0.0.0/24; its first address (10.0.0.1) is the `kubernetes` Service ClusterIP. */
  serviceClusterIpRange?: string;
  extraApiServerArgs?: string[];
  extraControllerManagerArgs?: string[];
  extraSchedulerArgs?: string[];
  /**
   * kube-controller-manager --node-monitor-grace-period. Default "1h" so that Node objects that
   * tests create (no kubelet, no heartbeats) stay Ready for the whole run instead of turning
   * Unknown + tainted unreachable after the upstream default of 50s. Pass "50s" for upstream.
   */
  nodeMonitorGracePeriod?: string;
  /**
   * Directory holding the binaries. Default: $KLP_K8S_BIN_DIR, else `ensure-binaries.sh` asked for
   * exactly the ones this control plane runs (no controller-manager/scheduler without controllers).
   */
  binDir?: string;
  /**
   * Keep `dir` on stop(). Default: true when the caller passed `dir`, else false unless
   * $KLP_KEEP_CONTROL_PLANE is set.
   */
  keep?: boolean;
  /** Progress lines (what is starting, how long it took). */
  log?: (line: string) => void;
}

export interface KubectlResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface ClientIdentity {
  certPath: string;
  keyPath: string;
  kubeconfigPath: string;
}

/** What a process other than the owner can do with a running control plane. */
export interface ControlPlaneClient {
  dir: string;
  binDir: string;
  kubeconfigPath: string;
  /** https://127.0.0.1:<port> */
  server: string;
  caCertPath: string;
  caKeyPath: string;
  serviceAccountKeyPath: string;
  /** First address of the service range: the `kubernetes` Service ClusterIP, named in the serving cert. */
  kubernetesServiceIp: string;
  /** Runs the matching kubectl with --kubeconfig (admin unless opts.kubeconfig). Never throws on exit code. */
  kubectl(args: string[], opts?: { input?: string; kubeconfig?: string; timeoutMs?: number /* default 600_000 */ }): Promise<KubectlResult>;
  /** A client certificate signed by the cluster CA, and a kubeconfig (data embedded) for that identity. */
  issueClientCert(commonName: string, organizations: string[]): Promise<ClientIdentity>;
  /**
   * A kubeconfig holding only the server, the CA and this bearer token; without a token, no
   * credentials at all (for `kubectl --token=...`). Never add `--token` to the admin kubeconfig:
   * the API server tries the client certificate first, so the request stays admin.
   */
  tokenKubeconfig(token?: string): Promise<string>;
}

export interface ControlPlane extends ControlPlaneClient {
  /** Milliseconds per start phase (binaries, certs, etcd, kube-apiserver, controllers, total, restarts). */
  timings: Record<string, number>;
  /** Current pids per component. */
  pids(): Record<string, number>;
  /** VmRSS in KiB per running component (from /proc). */
  memory(): Promise<Record<string, number>>;
  /** Stop and start kube-apiserver on the same port; resolves when /readyz is ok again. */
  restartApiServer(): Promise<void>;
  /** SIGTERM, then SIGKILL after a grace period; waits for every process; idempotent. */
  stop(): Promise<void>;
}
