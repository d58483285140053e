/**
 * The operator's connection to the API server: the agents' small HTTP client (see
 * kube/connection.ts for why not @kubernetes/client-node). In a pod, the ServiceAccount token; elsewhere, $KUBECONFIG.
 */
import { inClusterConnection, kubeconfigConnection, type Connection } from "../../kube/connection.ts";
import { KubeHttp } from "../../kube/http-client.ts";

export function defaultConnection(env: NodeJS.ProcessEnv): Connection {
  return env.KUBECONFIG ? kubeconfigConnection(env.KUBECONFIG) : inClusterConnection(env);
}

/**
 * A client whose calls give up after `requestTimeoutMs`: one sent on a connection that died without
 * a FIN or RST must not hold a reconcile worker. On HTTP/2 (the API server's choice) one connection
 * carries the informers' watches and the workers' requests; on HTTP/1.1, enough connections for the
 * watches (each holds one) beside the requests.
 */
export function operatorHttp(connection: Connection, requestTimeoutMs: number): KubeHttp {
  return new KubeHttp(connection, { requestTimeoutMs, maxSockets: 32, userAgent: "kpatch-operator" });
}
