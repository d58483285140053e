/**
 * From the merged kubeconfig to what a connection needs: the context chosen, its cluster and user
 * checked strictly, paths made absolute, and the one way of authenticating picked as kubectl picks
 * it. Pure: no file is read here (files are only named), so every rule is a table test.
 */
import { dirname, resolve, sep } from "node:path";
import type { z } from "zod";
import { KubeconfigError } from "./errors.ts";
import type { FromFile, MergedKubeconfig } from "./merge.ts";
import { ClusterSchema, ContextSchema, UNSUPPORTED, UserSchema, type ExecConfig, type KubeUser } from "./schema.ts";

/** Certificate material: inline (base64-decoded) or a file still to read. */
export type Material = { readonly data: Buffer } | { readonly file: string };

export type AuthPlan =
  | { readonly kind: "none" }
  | { readonly kind: "token"; readonly token: string }
  | { readonly kind: "tokenFile"; readonly file: string }
  | { readonly kind: "basic"; readonly username: string; readonly password: string }
  | { readonly kind: "exec"; readonly user: string; readonly exec: ExecConfig; readonly clusterConfig?: unknown };

export interface ConnectionPlan {
  readonly context: string;
  /** Origin and path prefix, without a trailing slash. */
  readonly server: string;
  readonly tlsServerName?: string | undefined;
  readonly insecureSkipTlsVerify: boolean;
  readonly ca?: Material | undefined;
  /** A client certificate; may come with a token (both are sent, as kubectl does). */
  readonly clientCert?: { readonly cert: Material; readonly key: Material } | undefined;
  readonly auth: AuthPlan;
}

/** The extension a cluster may carry for its exec plugin (passed on in KUBERNETES_EXEC_INFO). */
const EXEC_EXTENSION = "client.authentication.k8s.io/exec";

export function planConnection(merged: MergedKubeconfig, opts: { readonly context?: string | undefined } = {}): ConnectionPlan {
  const name = chooseContext(merged, opts.context);
  const ctxEntry = merged.contexts.get(name);
  if (!ctxEntry) throw new KubeconfigError("NoContext", `context "${name}" not found (contexts: ${names(merged.contexts)})`, "current-context");
  const ctx = strict(ContextSchema, ctxEntry.value, `contexts[${name}].context`);
  const clusterEntry = merged.clusters.get(ctx.cluster);
  if (!clusterEntry) throw new KubeconfigError("NoContext", `contexts[${name}].context.cluster: cluster "${ctx.cluster}" not found`, `contexts[${name}].context.cluster`);
  if (!ctx.user) throw new KubeconfigError("NoContext", `contexts[${name}].context.user: not set`, `contexts[${name}].context.user`);
  const userEntry = merged.users.get(ctx.user);
  if (!userEntry) throw new KubeconfigError("NoContext", `contexts[${name}].context.user: user "${ctx.user}" not found`, `contexts[${name}].context.user`);
  const cluster = planCluster(ctx.cluster, clusterEntry);
  const user = planUser(ctx.user, userEntry, cluster.execExtension);
  return { context: name, ...cluster.plan, ...user };
}

function chooseContext(merged: MergedKubeconfig, override: string | undefined): string {
  const name = override ?? merged.currentContext?.value;
  if (name) return name;
  // Not kubectl (it would fall back to localhost:8080): a file with a single context means that one.
  if (merged.contexts.size === 1) return [...merged.contexts.keys()][0]!;
  throw new KubeconfigError("NoContext", `current-context is not set (contexts: ${names(merged.contexts)})`, "current-context");
}

function planCluster(name: string, entry: FromFile<unknown>) {
  const where = `clusters[${name}].cluster`;
  const c = strict(ClusterSchema, entry.value, where);
  let url: URL;
  try {
    url = new URL(c.server);
  } catch (cause) {
    throw new KubeconfigError("Invalid", `${where}.server: "${c.server}" is not a URL`, `${where}.server`, { cause });
  }
  if (url.protocol !== "https:") throw new KubeconfigError("Unsupported", `${where}.server: only https:// servers are supported, not ${url.protocol}`, `${where}.server`);
  const caData = c["certificate-authority-data"];
  const caFile = c["certificate-authority"];
  if (caData && caFile) conflict(`${where}.certificate-authority`, `certificate-authority-data and certificate-authority are both set`);
  const ca = material(caData, caFile, entry.file);
  if (ca && c["insecure-skip-tls-verify"]) conflict(`${where}.insecure-skip-tls-verify`, `a certificate authority together with insecure-skip-tls-verify (kubectl refuses it too)`);
  const execExtension = (c.extensions ?? []).find((e): e is { name: string; extension: unknown } => (e as { name?: unknown }).name === EXEC_EXTENSION)?.extension;
  const plan = {
    server: `${url.origin}${url.pathname.replace(/\/+$/, "")}`,
    tlsServerName: c["tls-server-name"] || undefined,
    insecureSkipTlsVerify: c["insecure-skip-tls-verify"] ?? false,
    ca,
  };
  return { plan, execExtension };
}

function planUser(name: string, entry: FromFile<unknown>, execExtension: unknown): Pick<ConnectionPlan, "clientCert" | "auth"> {
  const where = `users[${name}].user`;
  const u = strict(UserSchema, entry.value ?? {}, where);
  const clientCert = planClientCert(u, entry.file, where);
  const basic = u.username || u.password ? { kind: "basic" as const, username: u.username ?? "", password: u.password ?? "" } : undefined;
  const token = u.token ? { kind: "token" as const, token: u.token } : u.tokenFile ? { kind: "tokenFile" as const, file: resolve(dirname(entry.file), u.tokenFile) } : undefined;
  if (basic && token) conflict(`${where}.username`, `more than one authentication method (token and username/password)`);
  const staticAuth = token ?? basic;
  if (!u.exec) return { clientCert, auth: staticAuth ?? { kind: "none" } };
  // kubectl silently prefers static credentials over an exec plugin; saying so beats guessing which was meant.
  if (clientCert || staticAuth) {
    const other = clientCert ? "a client certificate" : staticAuth?.kind === "basic" ? "username/password" : "a token";
    conflict(`${where}.exec`, `exec together with ${other}: keep one`);
  }
  return { clientCert, auth: { kind: "exec", user: name, exec: planExec(u.exec, entry.file, where), clusterConfig: execExtension } };
}

function planClientCert(u: KubeUser, file: string, where: string): ConnectionPlan["clientCert"] {
  const certData = u["client-certificate-data"];
  const certFile = u["client-certificate"];
  const keyData = u["client-key-data"];
  const keyFile = u["client-key"];
  if (certData && certFile) conflict(`${where}.client-certificate`, `client-certificate-data and client-certificate are both set`);
  if (keyData && keyFile) conflict(`${where}.client-key`, `client-key-data and client-key are both set`);
  const cert = material(certData, certFile, file);
  const key = material(keyData, keyFile, file);
  if (!cert !== !key) conflict(`${where}.${cert ? "client-key" : "client-certificate"}`, `a client certificate needs both a certificate and a key`);
  return cert && key ? { cert, key } : undefined;
}

function planExec(exec: ExecConfig, file: string, where: string): ExecConfig {
  const mode = exec.interactiveMode ?? (exec.apiVersion === "client.authentication.k8s.io/v1" ? undefined : "IfAvailable");
  if (!mode) throw new KubeconfigError("Invalid", `${where}.exec.interactiveMode must be set for ${exec.apiVersion} (Never or IfAvailable)`, `${where}.exec.interactiveMode`);
  if (mode === "Always") {
    throw new KubeconfigError("Unsupported", `${where}.exec.interactiveMode: Always needs a terminal, and this client never has one; use Never or IfAvailable`, `${where}.exec.interactiveMode`);
  }
  // As client-go: a command with a slash is a path relative to the kubeconfig; a bare name is looked up in PATH.
  const command = exec.command.includes(sep) ? resolve(dirname(file), exec.command) : exec.command;
  return { ...exec, command, interactiveMode: mode };
}

function material(data: string | null | undefined, file: string | null | undefined, origin: string): Material | undefined {
  if (data) return { data: Buffer.from(data, "base64") };
  if (file) return { file: resolve(dirname(origin), file) };
  return undefined;
}

function conflict(field: string, why: string): never {
  throw new KubeconfigError("Conflict", `${field}: ${why}`, field);
}

/** Parses a selected entry strictly: a field we refuse or do not know is named in the error. */
function strict<S extends z.ZodType>(schema: S, value: unknown, where: string): z.infer<S> {
  if (value && typeof value === "object") {
    for (const [key, why] of Object.entries(UNSUPPORTED)) {
      const v = (value as Record<string, unknown>)[key];
      if (v === undefined || v === null) continue;
      const detail = key === "auth-provider" ? ` (${String((v as { name?: unknown }).name ?? "?")})` : "";
      throw new KubeconfigError("Unsupported", `${where}.${key}${detail} is not supported: ${why}`, `${where}.${key}`);
    }
  }
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const issue = r.error.issues[0]!;
  const at = [where, ...issue.path.map(String)].join(".");
  if (issue.code === "unrecognized_keys") {
    const field = `${at}.${issue.keys[0]}`;
    throw new KubeconfigError("Unsupported", `${field} is not a field this client knows; it would be ignored, so it is refused`, field);
  }
  throw new KubeconfigError("Invalid", `${at}: ${issue.message}`, at);
}

function names(m: ReadonlyMap<string, unknown>): string {
  return m.size ? [...m.keys()].join(", ") : "none";
}
