/**
 * What a `url` source's urlAccess names, read at the moment of the download: the CA bundle from a
 * ConfigMap, the bearer token and the request headers from Secrets, all in the operator's
 * namespace (where the agent runs, and where the operator lets its ServiceAccount read exactly
 * these objects by name). Read at every download, never cached: a rotated token is used by the
 * next one.
 *
 * No credential ever leaves this module but in the request's headers: errors name the Secret and
 * its key, never a value.
 */
import { getCACertificates } from "node:tls";
import { X509Certificate } from "node:crypto";
import { BEARER_TOKEN_DEFAULT_KEY, CA_BUNDLE_DEFAULT_KEY, type UrlAccess } from "../../crds/url-access.ts";
import type { KubeHttp } from "../../kube/http-client.ts";

/** What module sources read from the API: single objects by path (a ConfigMap, a Secret). */
export type ObjectReader = Pick<KubeHttp, "json">;

/** What a download needs from urlAccess: whom to trust and what to send. */
export interface ResolvedAccess {
  /** Trusted CA certificates (PEM) for every request of the download; undefined: the agent's default. */
  readonly ca?: string | readonly string[];
  /** Sent to the URL's own origin only. */
  readonly headers: Readonly<Record<string, string>>;
  /** Where the credentials came from, for messages (names, never values). */
  readonly credentialsFrom?: string;
}

/** urlAccess cannot be resolved; the caller makes it a SourceUnavailable (retried: the object may appear). */
export class AccessUnavailable extends Error {
  override readonly name = "AccessUnavailable";
}

type ObjectData = { data?: Record<string, string> };

/** A header name (RFC 9110 token) the request may carry; hop-by-hop and framing headers stay Node's. */
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const RESERVED_HEADERS = new Set(["host", "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "te", "trailer", "proxy-connection"]);
/** Visible ASCII, space, tab and obs-text: no CR, LF or NUL (header injection). */
const HEADER_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

export async function resolveAccess(access: UrlAccess | undefined, http: ObjectReader, namespace: string | undefined, baseCa: string | undefined): Promise<ResolvedAccess> {
  if (!access) return { ...(baseCa === undefined ? {} : { ca: baseCa }), headers: {} };
  if (!namespace) throw new AccessUnavailable("urlAccess is set but the agent does not know the operator's namespace (POD_NAMESPACE)");
  const headers: Record<string, string> = {};
  const from: string[] = [];
  if (access.headersSecretName) {
    const where = `Secret ${namespace}/${access.headersSecretName} (urlAccess.headersSecretName)`;
    Object.assign(headers, headersFromSecret(where, await read(http, "secrets", namespace, access.headersSecretName, where)));
    from.push(where);
  }
  if (access.bearerTokenSecret) {
    const key = access.bearerTokenSecret.key ?? BEARER_TOKEN_DEFAULT_KEY;
    const where = `Secret ${namespace}/${access.bearerTokenSecret.name} key ${key} (urlAccess.bearerTokenSecret)`;
    const secret = await read(http, "secrets", namespace, access.bearerTokenSecret.name, where);
    const token = secretValue(secret, key, where).trim();
    if (token === "" || !HEADER_VALUE.test(token)) throw new AccessUnavailable(`${where} is empty or holds a character a header cannot carry (CR, LF, NUL)`);
    if (Object.keys(headers).some((h) => h.toLowerCase() === "authorization")) {
      throw new AccessUnavailable(`${where}: the headers Secret sets Authorization too; keep one of them`);
    }
    headers.authorization = `Bearer ${token}`;
    from.push(where);
  }
  const ca = access.caBundle ? await caOf(access.caBundle, http, namespace, baseCa) : baseCa;
  return { ...(ca === undefined ? {} : { ca }), headers, ...(from.length ? { credentialsFrom: from.join(" and ") } : {}) };
}

async function caOf(bundle: NonNullable<UrlAccess["caBundle"]>, http: ObjectReader, namespace: string, baseCa: string | undefined): Promise<readonly string[]> {
  const key = bundle.key ?? CA_BUNDLE_DEFAULT_KEY;
  const where = `ConfigMap ${namespace}/${bundle.configMapName} key ${key} (urlAccess.caBundle)`;
  const cm = await read(http, "configmaps", namespace, bundle.configMapName, where);
  const pem = cm.data?.[key];
  if (pem === undefined) throw new AccessUnavailable(`${where}: the ConfigMap has no data key ${key}`);
  const certs = pemCertificates(pem);
  if (certs.length === 0) throw new AccessUnavailable(`${where} holds no PEM certificate`);
  return (bundle.trust ?? "SystemAndBundle") === "BundleOnly" ? certs : [...defaultRoots(baseCa), ...certs];
}

/** The agent's default roots: the test's `ca` when given, else Node's default set (bundled, plus NODE_EXTRA_CA_CERTS). */
function defaultRoots(baseCa: string | undefined): readonly string[] {
  if (baseCa !== undefined) return [baseCa];
  return getCACertificates("default");
}

/** Every certificate of a PEM bundle that parses; the rest (comments, other blocks) is ignored. */
export function pemCertificates(pem: string): string[] {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  return blocks.filter((b) => {
    try {
      new X509Certificate(b);
      return true;
    } catch {
      return false;
    }
  });
}

/** Each key of the Secret a header, its value the header's value; refuses what a request must not carry. */
export function headersFromSecret(where: string, secret: ObjectData): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of Object.keys(secret.data ?? {}).sort()) {
    if (!HEADER_NAME.test(name) || RESERVED_HEADERS.has(name.toLowerCase())) throw new AccessUnavailable(`${where}: key ${JSON.stringify(name)} is not a header the agent may set`);
    const value = secretValue(secret, name, where).trim();
    if (!HEADER_VALUE.test(value)) throw new AccessUnavailable(`${where}: the value of ${name} holds a character a header cannot carry (CR, LF, NUL)`);
    out[name.toLowerCase()] = value;
  }
  if (Object.keys(out).length === 0) throw new AccessUnavailable(`${where} has no keys`);
  return out;
}

function secretValue(secret: ObjectData, key: string, where: string): string {
  const b64 = secret.data?.[key];
  if (b64 === undefined) throw new AccessUnavailable(`${where}: the Secret has no data key ${key}`);
  return Buffer.from(b64, "base64").toString("utf8");
}

async function read(http: ObjectReader, resource: "secrets" | "configmaps", namespace: string, name: string, where: string): Promise<ObjectData> {
  try {
    return await http.json<ObjectData>("GET", `/api/v1/namespaces/${encodeURIComponent(namespace)}/${resource}/${encodeURIComponent(name)}`);
  } catch (err) {
    const code = (err as { code?: number }).code;
    const kind = resource === "secrets" ? "Secret" : "ConfigMap";
    if (code === 404) throw new AccessUnavailable(`${where}: ${kind} ${namespace}/${name} not found; create it in the operator's namespace`, { cause: err });
    if (code === 403) {
      throw new AccessUnavailable(
        `${where}: the agent may not read ${kind} ${namespace}/${name} (the operator grants that to the objects patches name; it has not yet, or may not grant it)`,
        { cause: err },
      );
    }
    throw new AccessUnavailable(`${where}: reading ${kind} ${namespace}/${name}: ${(err as Error).message}`, { cause: err });
  }
}
