/**
 * The kubeconfig shape (clientcmd/api/v1), as far as this client reads it. A file is parsed
 * loosely — entries we never select may hold anything (another context's gcp auth-provider must not
 * stop us) — and the selected cluster and user strictly: a field we do not know is an error naming
 * it, not a field silently dropped.
 */
import { z } from "zod";

/** One file: named lists whose entries are checked only once selected. */
export const KubeconfigFileSchema = z.object({
  "current-context": z.string().nullish(),
  clusters: z.array(z.object({ name: z.string(), cluster: z.unknown() })).nullish(),
  users: z.array(z.object({ name: z.string(), user: z.unknown() })).nullish(),
  contexts: z.array(z.object({ name: z.string(), context: z.unknown() })).nullish(),
});
export type KubeconfigFile = z.infer<typeof KubeconfigFileSchema>;

/** `extensions` are for other tools; kubectl ignores them too. */
const extensions = z.array(z.unknown()).nullish();

export const ContextSchema = z.object({
  cluster: z.string().min(1),
  user: z.string().nullish(),
  /** The default namespace of kubectl; our callers name their namespaces, so it is not used. */
  namespace: z.string().nullish(),
  extensions,
});

export const ClusterSchema = z.strictObject({
  /** https://host[:port][/path prefix]: the prefix (Rancher's /k8s/clusters/c-x) is kept on every request. */
  server: z.string().min(1),
  /** Name checked in the server's certificate (and sent as SNI) instead of the URL's host. */
  "tls-server-name": z.string().nullish(),
  "insecure-skip-tls-verify": z.boolean().nullish(),
  "certificate-authority": z.string().nullish(),
  /** Base64 PEM. */
  "certificate-authority-data": z.string().nullish(),
  /** Not supported: refused by name (see UNSUPPORTED). */
  "proxy-url": z.string().nullish(),
  /** We never ask for compressed responses, so there is nothing to disable. */
  "disable-compression": z.boolean().nullish(),
  extensions,
});

export const EXEC_API_VERSIONS = ["client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1"] as const;

export const ExecConfigSchema = z.strictObject({
  apiVersion: z.enum(EXEC_API_VERSIONS, { error: `exec apiVersion must be one of ${EXEC_API_VERSIONS.join(", ")}` }),
  /** A name looked up in PATH, or a path (relative to the kubeconfig's directory when it has a slash). */
  command: z.string().min(1),
  args: z.array(z.string()).nullish(),
  /** Added to this process's environment for the plugin. */
  env: z.array(z.object({ name: z.string().min(1), value: z.string() })).nullish(),
  /** Printed when the command is not installed. */
  installHint: z.string().nullish(),
  /** Pass the cluster (server, CA, tls-server-name) to the plugin in KUBERNETES_EXEC_INFO. */
  provideClusterInfo: z.boolean().nullish(),
  /** Required for v1, IfAvailable by default for v1beta1 (as kubectl). We never have a terminal. */
  interactiveMode: z.enum(["Never", "IfAvailable", "Always"]).nullish(),
});
export type ExecConfig = z.infer<typeof ExecConfigSchema>;

export const UserSchema = z.strictObject({
  token: z.string().nullish(),
  /** Re-read every minute and on a 401, as client-go does (projected tokens rotate). */
  tokenFile: z.string().nullish(),
  "client-certificate": z.string().nullish(),
  "client-certificate-data": z.string().nullish(),
  "client-key": z.string().nullish(),
  "client-key-data": z.string().nullish(),
  username: z.string().nullish(),
  password: z.string().nullish(),
  exec: ExecConfigSchema.nullish(),
  /** Not supported: refused by name (see UNSUPPORTED). */
  "auth-provider": z.unknown().optional(),
  as: z.unknown().optional(),
  "as-uid": z.unknown().optional(),
  "as-groups": z.unknown().optional(),
  "as-user-extra": z.unknown().optional(),
  extensions,
});
export type KubeUser = z.infer<typeof UserSchema>;

/** Fields kubectl honours and this client does not, with what to do instead. */
export const UNSUPPORTED: Readonly<Record<string, string>> = {
  "proxy-url": "connecting through a proxy is not supported; reach the API server directly",
  "auth-provider":
    "legacy auth providers were removed from kubectl in 1.26; use the exec credential plugin that replaces it (gke-gcloud-auth-plugin, kubelogin for Azure and OIDC)",
  as: "impersonation is not supported; use the impersonated identity's own credentials",
  "as-uid": "impersonation is not supported; use the impersonated identity's own credentials",
  "as-groups": "impersonation is not supported; use the impersonated identity's own credentials",
  "as-user-extra": "impersonation is not supported; use the impersonated identity's own credentials",
};

/** What an exec plugin prints on stdout. */
export const ExecCredentialSchema = z.object({
  apiVersion: z.string(),
  kind: z.literal("ExecCredential"),
  status: z
    .object({
      /** RFC 3339; absent: valid until the API server answers 401. */
      expirationTimestamp: z.string().nullish(),
      token: z.string().nullish(),
      clientCertificateData: z.string().nullish(),
      clientKeyData: z.string().nullish(),
    })
    .nullish(),
});
