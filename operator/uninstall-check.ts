/**
 * `node operator.mjs uninstall-check`: the chart's pre-delete hook (templates/uninstall-check.yaml).
 *
 * While any KernelLivePatch exists it refuses, exit 1 with the reason in the Job's log: without
 * the operator their finalizers would never go, nothing would unload them, and agents would keep
 * running unmanaged. Uninstalling the operator must not silently unload kernels either, so it
 * does not delete them itself. With none left it deletes the agent DaemonSet the operator made
 * (the chart does not own it), so an uninstall leaves no workload behind.
 */
import { ignoreNotFound, type KubeHttp } from "../kube/http-client.ts";
import type { OperatorConfig } from "./config.ts";
import { PATCHES_PATH } from "../crds/schema.ts";

export interface UninstallCheckResult {
  readonly ok: boolean;
  readonly message: string;
}

/** At most this many names in the message. */
const NAMES_SHOWN = 10;

export async function uninstallCheck(http: KubeHttp, cfg: Pick<OperatorConfig, "KLP_NAMESPACE" | "KLP_AGENT_DAEMONSET">): Promise<UninstallCheckResult> {
  const list = await http.json<{ items?: Array<{ metadata?: { name?: string } }>; metadata?: { continue?: string } }>("GET", PATCHES_PATH, {
    query: { limit: NAMES_SHOWN },
  });
  const names = (list.items ?? []).map((p) => p.metadata?.name ?? "?");
  if (names.length > 0) {
    const more = list.metadata?.continue ? ` and more` : "";
    return {
      ok: false,
      message:
        `refusing to uninstall: KernelLivePatches exist (${names.join(", ")}${more}). ` +
        "Without the operator their finalizers never go and nothing unloads them. Delete them first " +
        "(kubectl delete klp --all: the agents unload the modules, paced by maxUnavailable), then " +
        "uninstall again; or uninstall with --no-hooks to leave the patches loaded, unmanaged, with their finalizers.",
    };
  }
  const ds = `/apis/apps/v1/namespaces/${encodeURIComponent(cfg.KLP_NAMESPACE)}/daemonsets/${encodeURIComponent(cfg.KLP_AGENT_DAEMONSET)}`;
  await ignoreNotFound(http.send("DELETE", ds, { query: { propagationPolicy: "Background" } }));
  return { ok: true, message: `no KernelLivePatch left; the agent DaemonSet ${cfg.KLP_NAMESPACE}/${cfg.KLP_AGENT_DAEMONSET} is gone` };
}
