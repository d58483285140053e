/**
 * Exec credential plugins (client.authentication.k8s.io v1 and v1beta1), as client-go runs them
 * (plugin/pkg/client/auth/exec): the command with its args and env added to ours,
 * KUBERNETES_EXEC_INFO describing the request (never interactive: we have no terminal; with
 * provideClusterInfo, the cluster too), stdout parsed as an ExecCredential. Its token or client
 * certificate is kept until status.expirationTimestamp (for ever without one), and dropped when
 * the API server answers 401 to it. One run at a time: requests waiting meanwhile share its result.
 */
import { spawn } from "node:child_process";
import type { Clock, CredentialSource, Credentials } from "./credentials.ts";
import { KubeconfigError } from "./errors.ts";
import { ExecCredentialSchema, type ExecConfig } from "./schema.ts";

/** The cluster as the plugin sees it in KUBERNETES_EXEC_INFO (ExecCredential spec.cluster). */
export interface ExecClusterInfo {
  readonly server: string;
  readonly "tls-server-name"?: string | undefined;
  readonly "insecure-skip-tls-verify"?: boolean | undefined;
  /** Base64 PEM, read from the file if the kubeconfig names one. */
  readonly "certificate-authority-data"?: string | undefined;
  /** The cluster's client.authentication.k8s.io/exec extension. */
  readonly config?: unknown;
}

export type PluginOutcome =
  | { readonly kind: "notFound" }
  | { readonly kind: "exited"; readonly code: number | null; readonly stdout: string; readonly stderr: string };

/** Runs the plugin: the one piece of I/O, a port so the tests can count and script runs. */
export type PluginRunner = (command: string, args: readonly string[], env: NodeJS.ProcessEnv) => Promise<PluginOutcome>;

export interface ExecSourceOptions {
  readonly exec: ExecConfig;
  /** The user's name in the kubeconfig, for messages. */
  readonly user: string;
  readonly cluster: ExecClusterInfo;
  readonly now: Clock;
  readonly env: NodeJS.ProcessEnv;
  readonly run?: PluginRunner;
}

const INSTALL_HELP =
  "It looks like you are trying to use a client-go credential plugin that is not installed.\n\n" +
  "To learn more about this feature, consult the documentation available at:\n" +
  "      https://kubernetes.io/docs/reference/access-authn-authz/authentication/#client-go-credential-plugins";

export function execCredentials(o: ExecSourceOptions): CredentialSource {
  const run = o.run ?? spawnPlugin;
  let cached: { creds: Credentials; expiresAt: number } | undefined;
  let pending: Promise<Credentials> | undefined;
  const refresh = async (): Promise<Credentials> => {
    const outcome = await run(o.exec.command, o.exec.args ?? [], pluginEnv(o));
    const got = credentialOf(o, outcome);
    cached = got;
    return got.creds;
  };
  return {
    current() {
      if (cached && o.now() < cached.expiresAt) return Promise.resolve(cached.creds);
      pending ??= refresh().finally(() => (pending = undefined));
      return pending;
    },
    rejected(used) {
      if (cached?.creds === used) cached = undefined;
    },
  };
}

function pluginEnv(o: ExecSourceOptions): NodeJS.ProcessEnv {
  const spec = { interactive: false, ...(o.exec.provideClusterInfo ? { cluster: o.cluster } : {}) };
  const info = { apiVersion: o.exec.apiVersion, kind: "ExecCredential", spec };
  const env: NodeJS.ProcessEnv = { ...o.env };
  for (const e of o.exec.env ?? []) env[e.name] = e.value;
  env.KUBERNETES_EXEC_INFO = JSON.stringify(info);
  return env;
}

/** The plugin's answer as credentials and the instant they stop being used, or why it is unusable. */
export function credentialOf(o: Pick<ExecSourceOptions, "exec" | "user">, outcome: PluginOutcome): { creds: Credentials; expiresAt: number } {
  const field = `users[${o.user}].user.exec`;
  const cmd = o.exec.command;
  if (outcome.kind === "notFound") {
    const hint = o.exec.installHint ? `\n\n${o.exec.installHint}` : "";
    throw new KubeconfigError("ExecNotFound", `exec: executable ${cmd} not found (${field}.command)\n\n${INSTALL_HELP}${hint}`, `${field}.command`);
  }
  const fail = (why: string): never => {
    throw new KubeconfigError("ExecFailed", `exec plugin ${cmd} (${field}): ${why}`, field);
  };
  const stderr = outcome.stderr.trim() ? `; stderr: ${outcome.stderr.trim().slice(-1000)}` : "";
  if (outcome.code !== 0) fail(`exited with ${outcome.code === null ? "a signal" : `code ${outcome.code}`}${stderr}`);
  let doc: unknown;
  try {
    doc = JSON.parse(outcome.stdout);
  } catch {
    fail(`stdout is not JSON${stderr}`);
  }
  const r = ExecCredentialSchema.safeParse(doc);
  if (!r.success) return fail(`stdout is not an ExecCredential: ${r.error.issues[0]!.message}`);
  const { apiVersion, status } = r.data;
  if (apiVersion !== o.exec.apiVersion) fail(`configured for ${o.exec.apiVersion}, returned ${apiVersion}`);
  if (!status) return fail("no status in the ExecCredential");
  const hasCert = !!status.clientCertificateData;
  if (hasCert !== !!status.clientKeyData) fail("returned only a certificate or only a key, not both");
  if (!status.token && !hasCert) fail("returned neither a token nor a certificate and key");
  let expiresAt = Infinity;
  if (status.expirationTimestamp) {
    expiresAt = Date.parse(status.expirationTimestamp);
    if (Number.isNaN(expiresAt)) fail(`expirationTimestamp "${status.expirationTimestamp}" is not a time`);
  }
  const creds: Credentials = {
    ...(status.token ? { authorization: `Bearer ${status.token}` } : {}),
    ...(hasCert ? { cert: Buffer.from(status.clientCertificateData!), key: Buffer.from(status.clientKeyData!) } : {}),
  };
  return { creds, expiresAt };
}

/** A plugin that has not answered in this long is stuck (a login prompt nobody will see). */
const PLUGIN_TIMEOUT_MS = 120_000;

/** Runs the command without a stdin (we are never interactive), stdout and stderr collected. */
export const spawnPlugin: PluginRunner = (command, args, env) =>
  new Promise((resolve, reject) => {
    const child = spawn(command, args, { env, stdio: ["ignore", "pipe", "pipe"], timeout: PLUGIN_TIMEOUT_MS });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (c: Buffer) => out.push(c));
    child.stderr.on("data", (c: Buffer) => err.push(c));
    child.on("error", (e: NodeJS.ErrnoException) =>
      e.code === "ENOENT" ? resolve({ kind: "notFound" }) : reject(new KubeconfigError("ExecFailed", `exec plugin ${command}: ${e.message}`, undefined, { cause: e })),
    );
    child.on("close", (code) =>
      resolve({ kind: "exited", code, stdout: Buffer.concat(out).toString("utf8"), stderr: Buffer.concat(err).toString("utf8") }),
    );
  });
