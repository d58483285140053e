import { z } from "zod";
import { CONFIGMAP_KEY, DNS_SUBDOMAIN } from "./object-names.ts";
import { doc } from "./rules.ts";

/**
 * How the agent reaches a `url` source behind a private CA and a token (Artifactory, Nexus, GitLab).
 * Every object it names lives in the operator's namespace, never in the patch: the operator lets
 * the agent's ServiceAccount read exactly those objects (a Role with resourceNames), and the agent
 * reads them at each download, so a rotated token is used by the next one.
 */
export const CA_BUNDLE_DEFAULT_KEY = "ca.crt";
export const BEARER_TOKEN_DEFAULT_KEY = "token";

export const CaBundleSource = doc(
  z
    .object({
      configMapName: doc(
        z.string().min(1).max(253).regex(DNS_SUBDOMAIN),
        "ConfigMap in the operator's namespace holding the PEM CA bundle, e.g. the target of a cert-manager trust-manager Bundle.",
      ),
      key: doc(
        z.string().max(253).regex(CONFIGMAP_KEY).default(CA_BUNDLE_DEFAULT_KEY),
        `Key of the ConfigMap's data holding the PEM certificates. Default ${CA_BUNDLE_DEFAULT_KEY} (the key of kube-root-ca.crt and of cert-manager's CA secrets).`,
      ),
      trust: doc(
        z.enum(["SystemAndBundle", "BundleOnly"]).default("SystemAndBundle"),
        "SystemAndBundle: the server's certificate may chain to the agent's default roots or to this bundle. BundleOnly: only to this bundle (the default roots are not trusted for this URL).",
      ),
    })
    .strict(),
  "A CA bundle that verifies the URL's server (and the servers it redirects to).",
);

export const SecretKeyRef = doc(
  z
    .object({
      name: doc(z.string().min(1).max(253).regex(DNS_SUBDOMAIN), "Secret in the operator's namespace."),
      key: doc(z.string().max(253).regex(CONFIGMAP_KEY).default(BEARER_TOKEN_DEFAULT_KEY), `Key of the Secret's data. Default ${BEARER_TOKEN_DEFAULT_KEY}.`),
    })
    .strict(),
  "A key of a Secret in the operator's namespace.",
);

export const UrlAccess = doc(
  z
    .object({
      caBundle: CaBundleSource.optional(),
      bearerTokenSecret: doc(
        SecretKeyRef.optional(),
        "Sent as `Authorization: Bearer <token>` (surrounding whitespace trimmed). Never written to the patch, its status, Events or logs.",
      ),
      headersSecretName: doc(
        z.string().min(1).max(253).regex(DNS_SUBDOMAIN).optional(),
        "Secret in the operator's namespace whose every key is a request header name and its value the header's value (e.g. PRIVATE-TOKEN for GitLab, X-JFrog-Art-Api for Artifactory). Never written to the patch, its status, Events or logs.",
      ),
    })
    .strict(),
  "Trust and credentials for the url source. Credentials and headers are sent only to the URL's own origin (scheme, host, port), not to a server it redirects to.",
);

export type UrlAccess = z.output<typeof UrlAccess>;
