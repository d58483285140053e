/**
 * How the agent (and the operator) reach the API server, without @kubernetes/client-node: importing that client
 * takes a Node process from 41 MiB to 124 MiB RSS, and the agent runs on every node. The agent
 * needs four calls (list, watch, get, server-side apply of status), so it speaks HTTP itself.
 *
 * In a pod: the kubelet-mounted service-account token (re-read, it rotates), CA and the
 * `kubernetes` Service from the environment. Outside (tests, demo, an admin's machine): a
 * kubeconfig read as kubectl reads it (kube/kubeconfig/): KUBECONFIG lists, server path prefixes,
 * exec credential plugins; what it cannot honour is an error naming the field, never an anonymous
 * request.
 */
import { readFileSync } from "node:fs";
import { basicAuth, staticCredentials, tokenFileCredentials, type Clock, type CredentialSource } from "./kubeconfig/credentials.ts";
import { KubeconfigError } from "./kubeconfig/errors.ts";
import { execCredentials, type ExecClusterInfo, type PluginRunner } from "./kubeconfig/exec-credential.ts";
import { loadKubeconfig } from "./kubeconfig/load.ts";
import { planConnection, type ConnectionPlan, type Material } from "./kubeconfig/plan.ts";

export type { Credentials, CredentialSource } from "./kubeconfig/credentials.ts";

export interface Connection {
  /** https://host[:port][/path prefix], no trailing slash: every request path goes after the prefix. */
  readonly server: string;
  readonly ca?: Buffer | undefined;
  readonly cert?: Buffer | undefined;
  readonly key?: Buffer | undefined;
  readonly insecureSkipTlsVerify?: boolean | undefined;
  /** The name to expect in the server's certificate (and send as SNI) instead of the URL's host. */
  readonly tlsServerName?: string | undefined;
  /** Current bearer token, if any (read on each request: projected tokens rotate). */
  readonly token?: (() => string) | undefined;
  /** Credentials that change (token file, exec plugin): asked before each request, told of a 401. */
  readonly credentials?: CredentialSource | undefined;
}

const SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";

export function inClusterConnection(env: NodeJS.ProcessEnv, saDir = SA_DIR): Connection {
  const host = env.KUBERNETES_SERVICE_HOST;
  const port = env.KUBERNETES_SERVICE_PORT ?? "443";
  if (!host) throw new Error("KUBERNETES_SERVICE_HOST is not set: not in a pod; set KUBECONFIG");
  const tokenFile = `${saDir}/token`;
  let cached = { at: 0, value: "" };
  return {
    server: `https://${host.includes(":") ? `[${host}]` : host}:${port}`,
    ca: readFileSync(`${saDir}/ca.crt`),
    token: () => {
      if (Date.now() - cached.at > 60_000) cached = { at: Date.now(), value: readFileSync(tokenFile, "utf8").trim() };
      return cached.value;
    },
  };
}

export interface KubeconfigOptions {
  /** Use this context instead of current-context (kubectl --context). */
  readonly context?: string | undefined;
  /** The clock of credential expiry and token-file re-reads (default Date.now). */
  readonly now?: Clock | undefined;
  /** The environment an exec plugin inherits (default process.env). */
  readonly env?: NodeJS.ProcessEnv | undefined;
  readonly runPlugin?: PluginRunner | undefined;
}

/**
 * The current context of a kubeconfig. `paths` is a KUBECONFIG value: one explicit file, or a
 * list separated by ":" merged as kubectl merges it. Throws a KubeconfigError naming the field for
 * anything it cannot honour; an exec plugin runs at the first request, not here.
 */
export function kubeconfigConnection(paths: string, opts: KubeconfigOptions = {}): Connection {
  return connectionFromPlan(planConnection(loadKubeconfig(paths), opts), opts);
}

export function connectionFromPlan(plan: ConnectionPlan, opts: KubeconfigOptions = {}): Connection {
  const ca = plan.ca && read(plan.ca, "certificate-authority");
  const base = {
    server: plan.server,
    ca,
    cert: plan.clientCert && read(plan.clientCert.cert, "client-certificate"),
    key: plan.clientCert && read(plan.clientCert.key, "client-key"),
    insecureSkipTlsVerify: plan.insecureSkipTlsVerify,
    tlsServerName: plan.tlsServerName,
  };
  const now = opts.now ?? Date.now;
  const auth = plan.auth;
  switch (auth.kind) {
    case "none":
      return base;
    case "token":
      return { ...base, token: () => auth.token };
    case "tokenFile":
      return { ...base, credentials: tokenFileCredentials(auth.file, now) };
    case "basic":
      return { ...base, credentials: staticCredentials({ authorization: basicAuth(auth.username, auth.password) }) };
    case "exec": {
      const cluster: ExecClusterInfo = {
        server: plan.server,
        "tls-server-name": plan.tlsServerName,
        "insecure-skip-tls-verify": plan.insecureSkipTlsVerify || undefined,
        "certificate-authority-data": ca?.toString("base64"),
        config: auth.clusterConfig,
      };
      const run = opts.runPlugin;
      return { ...base, credentials: execCredentials({ exec: auth.exec, user: auth.user, cluster, now, env: opts.env ?? process.env, ...(run ? { run } : {}) }) };
    }
  }
}

function read(m: Material, field: string): Buffer {
  if ("data" in m) return m.data;
  try {
    return readFileSync(m.file);
  } catch (cause) {
    throw new KubeconfigError("Unreadable", `${field} ${m.file}: ${(cause as Error).message}`, field, { cause });
  }
}
