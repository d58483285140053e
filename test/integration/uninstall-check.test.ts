/**
 * The chart's pre-delete hook (`operator.mjs uninstall-check`) against a real API server: refused,
 * naming the patches, while any KernelLivePatch exists; with none left, the agent DaemonSet the
 * operator made is deleted. (The Job itself runs under a real kubelet in the node layer.)
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { kubeconfigConnection } from "../../kube/connection.ts";
import { KubeHttp } from "../../kube/http-client.ts";
import { uninstallCheck } from "../../operator/uninstall-check.ts";
import { Cluster, kubeconfigPath } from "../support/klp.ts";

const suffix = Date.now().toString(36);
const NS = `klp-un-${suffix}`;
const DS = `agent-${suffix}`;
const PATCH = `un-${suffix}`;
const cluster = new Cluster();
let http: KubeHttp;

beforeAll(async () => {
  http = new KubeHttp(kubeconfigConnection(kubeconfigPath()));
  await cluster.ensureNamespace(NS);
});
afterAll(async () => {
  await cluster.deletePatch(PATCH).catch(() => undefined);
});

describe("uninstall-check (the chart's pre-delete hook)", () => {
  it("refuses while a KernelLivePatch exists, naming it and saying what to do; deletes the agent DaemonSet once none is left", async () => {
    await cluster.createPatch(PATCH, { modules: [{ kernelRelease: "6.1.0-56-amd64", sha256: "a".repeat(64), url: "https://example.com/m.ko" }] });
    await cluster.apps.createNamespacedDaemonSet({
      namespace: NS,
      body: {
        metadata: { name: DS },
        spec: {
          selector: { matchLabels: { app: DS } },
          template: { metadata: { labels: { app: DS } }, spec: { containers: [{ name: "c", image: "kpatch-agent:dev" }] } },
        },
      },
    });
    const cfg = { KLP_NAMESPACE: NS, KLP_AGENT_DAEMONSET: DS };
    const refused = await uninstallCheck(http, cfg);
    expect(refused.ok).toBe(false);
    expect(refused.message).toContain(PATCH);
    expect(refused.message).toContain("kubectl delete klp");
    // Nothing was touched.
    expect((await cluster.apps.readNamespacedDaemonSet({ namespace: NS, name: DS })).metadata?.name).toBe(DS);

    await cluster.deletePatch(PATCH);
    const others = await http.json<{ items: unknown[] }>("GET", "/apis/livepatch.kpatch.dev/v1alpha1/kernellivepatches");
    const after = await uninstallCheck(http, cfg);
    // Another suite's patch left on this shared API server still refuses, as it must.
    if (others.items.length > 0) expect(after.ok).toBe(false);
    else {
      expect(after).toMatchObject({ ok: true });
      const gone = await cluster.apps.readNamespacedDaemonSet({ namespace: NS, name: DS }).then(
        (d) => d.metadata?.deletionTimestamp !== undefined,
        () => true,
      );
      expect(gone).toBe(true);
    }
  });
});
