/**
 * How the agent (and the operator) reach the API server, without @kubernetes/client-node: importing that client
 * takes a Node process from 41 MiB to 124 MiB RSS, and the agent runs on every node. The agent
 * needs four calls (list, watch, get, server-side apply of status), so it speaks HTTP itself.
 *
 * In a pod: the kubelet-mounted service-account token (re-read, it rotates), CA and the
 * `kubernetes` Service from the environment. Outside (tests, demo): a kubeconfig file.
 */
import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { parse } from "yaml";

export interface Connection {
  readonly server: string;
  readonly ca?: Buffer | undefined;
  readonly cert?: Buffer | undefined;
  readonly key?: Buffer | undefined;
  readonly insecureSkipTlsVerify?: boolean | undefined;
  /** Current bearer token, if any (read on each request: projected tokens rotate). */
  readonly token?: (() => string) | undefined;
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

interface KubeconfigFile {
  "current-context"?: string;
  contexts?: Array<{ name: string; context: { cluster: string; user: string } }>;
  clusters?: Array<{ name: string; cluster: { server: string; "certificate-authority"?: string; "certificate-authority-data"?: string; "insecure-skip-tls-verify"?: boolean } }>;
  users?: Array<{ name: string; user: { token?: string; tokenFile?: string; "client-certificate"?: string; "client-certificate-data"?: string; "client-key"?: string; "client-key-data"?: string } }>;
}

/** The current context of a kubeconfig: certificates and tokens inline or as files. */
export function kubeconfigConnection(path: string): Connection {
  const cfg = parse(readFileSync(path, "utf8")) as KubeconfigFile;
  const base = dirname(path);
  const ctxName = cfg["current-context"];
  const ctx = cfg.contexts?.find((c) => c.name === ctxName)?.context ?? cfg.contexts?.[0]?.context;
  if (!ctx) throw new Error(`${path}: no context`);
  const cluster = cfg.clusters?.find((c) => c.name === ctx.cluster)?.cluster;
  const user = cfg.users?.find((u) => u.name === ctx.user)?.user ?? {};
  if (!cluster) throw new Error(`${path}: no cluster ${ctx.cluster}`);
  const material = (data: string | undefined, file: string | undefined) =>
    data ? Buffer.from(data, "base64") : file ? readFileSync(resolve(base, file)) : undefined;
  const tokenFile = user.tokenFile ? resolve(base, user.tokenFile) : undefined;
  return {
    server: cluster.server.replace(/\/+$/, ""),
    ca: material(cluster["certificate-authority-data"], cluster["certificate-authority"]),
    insecureSkipTlsVerify: cluster["insecure-skip-tls-verify"],
    cert: material(user["client-certificate-data"], user["client-certificate"]),
    key: material(user["client-key-data"], user["client-key"]),
    token: user.token ? () => user.token! : tokenFile ? () => readFileSync(tokenFile, "utf8").trim() : undefined,
  };
}
