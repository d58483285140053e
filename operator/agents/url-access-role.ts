/**
 * The agent reads a url source's CA bundle and credentials (urlAccess) from the operator's
 * namespace, and may read exactly the objects some patch names there, never every Secret: the
 * operator keeps one Role listing them by resourceNames, bound to the agent's ServiceAccount. The
 * agent reads them by name at each download, so a rotated token needs no restart and a Secret no
 * patch names any more is no longer readable.
 *
 * The chart creates the Role (without rules) and its RoleBinding to the agent's ServiceAccount; the
 * operator only writes the Role's rules. The API server lets a user grant only what it holds, or
 * what `escalate` allows: the operator holds `get`, `patch` and `escalate` on this one Role (by
 * resourceNames), and no right to read a Secret itself, nor to bind the Role to anyone else.
 */
import type { V1PolicyRule, V1Role } from "@kubernetes/client-node";
import type { Logger } from "pino";
import type { KernelLivePatch } from "../../crds/schema.ts";
import { APPLY, type KubeHttp } from "../../kube/http-client.ts";
import type { OperatorConfig } from "../config.ts";
import { AGENT_LABELS } from "./daemonset.ts";

type Config = Pick<OperatorConfig, "KLP_NAMESPACE" | "KLP_AGENT_DAEMONSET" | "KLP_AGENT_SERVICE_ACCOUNT">;

/** The Role and RoleBinding's name (the chart's `<agent.daemonSetName>-url-access`). */
export const urlAccessRoleName = (cfg: Pick<Config, "KLP_AGENT_DAEMONSET">): string => `${cfg.KLP_AGENT_DAEMONSET}-url-access`;

export interface NamedObjects {
  readonly secrets: readonly string[];
  readonly configMaps: readonly string[];
}

/** The Secrets and ConfigMaps the patches' url sources name, sorted and distinct. */
export function namedObjects(patches: readonly KernelLivePatch[]): NamedObjects {
  const secrets = new Set<string>();
  const configMaps = new Set<string>();
  for (const p of patches) {
    for (const m of p.spec.modules) {
      const a = m.url ? m.urlAccess : undefined;
      if (a?.bearerTokenSecret) secrets.add(a.bearerTokenSecret.name);
      if (a?.headersSecretName) secrets.add(a.headersSecretName);
      if (a?.caBundle) configMaps.add(a.caBundle.configMapName);
    }
  }
  return { secrets: [...secrets].sort(), configMaps: [...configMaps].sort() };
}

/**
 * The agent's Role. A rule is written only for a non-empty list: a rule without resourceNames
 * would grant every Secret of the namespace.
 */
export function desiredUrlAccessRole(named: NamedObjects, cfg: Config): V1Role {
  const rules: V1PolicyRule[] = [];
  if (named.secrets.length > 0) rules.push({ apiGroups: [""], resources: ["secrets"], verbs: ["get"], resourceNames: [...named.secrets] });
  if (named.configMaps.length > 0) rules.push({ apiGroups: [""], resources: ["configmaps"], verbs: ["get"], resourceNames: [...named.configMaps] });
  return {
    apiVersion: "rbac.authorization.k8s.io/v1",
    kind: "Role",
    metadata: { name: urlAccessRoleName(cfg), namespace: cfg.KLP_NAMESPACE, labels: { ...AGENT_LABELS } },
    rules,
  };
}

export interface UrlAccessRole {
  /** Applies the Role for these patches when it changed; a failure is logged and tried again at the next call. */
  apply(patches: readonly KernelLivePatch[]): Promise<void>;
}

/**
 * Server-side applies the Role's rules, only when what they grant changed (the controller calls
 * this on every patch event). A failure never blocks the agent DaemonSet: the agent then reports
 * that it may not read the object, and the next call applies again.
 */
export function urlAccessRole(http: KubeHttp, cfg: Config, fieldManager: string, log: Logger): UrlAccessRole {
  let applied: string | undefined;
  const base = `/apis/rbac.authorization.k8s.io/v1/namespaces/${encodeURIComponent(cfg.KLP_NAMESPACE)}`;
  const ssa = (body: V1Role) =>
    http.json("PATCH", `${base}/roles/${encodeURIComponent(urlAccessRoleName(cfg))}`, { query: { fieldManager, force: true }, contentType: APPLY, body });
  return {
    async apply(patches) {
      const named = namedObjects(patches);
      const key = JSON.stringify(named);
      if (key === applied) return;
      try {
        await ssa(desiredUrlAccessRole(named, cfg));
        applied = key;
        log.info({ secrets: named.secrets, configMaps: named.configMaps }, "agent's url-access Role applied");
      } catch (err) {
        log.warn({ err, role: urlAccessRoleName(cfg) }, "cannot apply the agent's url-access Role; agents cannot read the Secrets and ConfigMaps urlAccess names until it is");
      }
    },
  };
}
