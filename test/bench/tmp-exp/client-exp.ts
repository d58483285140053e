import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { CustomObjectsApi, KubeConfig } from "@kubernetes/client-node";
import { ensureBinaries } from "../../support/control-plane.ts";
import { prepareCluster } from "../scale/cluster.ts";
import { NodeObjectClient } from "../../../operator/kube/node-objects.ts";
import { timedKubeConfig } from "../../../operator/kube/timed-kubeconfig.ts";
import { KubeHttp } from "../../../node-agent/kube/http-client.ts";
import { NODE_OBJECTS_PATH } from "../../../node-agent/kube/node-channel.ts";
import { meanMs, scrapeApiServer } from "../scale/metrics.ts";
import { pool } from "../scale/util.ts";

const log = (l: string) => console.error(l);
const binDir = await ensureBinaries(log);
const dir = await mkdtemp(path.join(tmpdir(), "klp-client-exp-"));
const N = Number(process.env.N ?? 200);
const c = await prepareCluster({ dir, binDir, nodes: N, patches: 1, log });
try {
  const kc = new KubeConfig();
  kc.loadFromFile(c.cp.kubeconfigPath);
  const client = new NodeObjectClient(timedKubeConfig(kc, 60_000).makeApiClient(CustomObjectsApi));
  const patches = [{ name: "p", uid: "u", generation: 1, creationTimestamp: "2026-01-01T00:00:00Z", admitted: false, spec: { modules: [{ kernelRelease: "x", sha256: "a".repeat(64), url: "https://x/y.ko" }] } }];
  const isSpec = (l: Record<string, string>) => l.resource === "kernellivepatchnodes" && !l.subresource && l.verb === "APPLY";
  for (const conc of [16, 1]) {
    for (const round of [0, 1]) {
      const m0 = await scrapeApiServer(c.admin);
      const t0 = performance.now();
      const lat: number[] = [];
      await pool(c.nodes, conc, async (n, i) => {
        const s = performance.now();
        await client.applySpec({ name: n, uid: c.nodeUids.get(n)! }, [{ ...patches[0]!, admitted: round === 1 }], `h${conc}${round}${i}`);
        lat.push(performance.now() - s);
      });
      const ms = performance.now() - t0;
      const m1 = await scrapeApiServer(c.admin);
      console.log(`client-node conc ${conc} round ${round}: ${N} applies in ${ms.toFixed(0)} ms; client mean ${(lat.reduce((a, b) => a + b) / lat.length).toFixed(1)} ms, server mean ${meanMs(m0, m1, isSpec).toFixed(1)} ms`);
    }
  }
  // Same applies with the agent's small client
  const http = new KubeHttp(c.conn);
  for (const round of [2, 3]) {
    const m0 = await scrapeApiServer(c.admin);
    const t0 = performance.now();
    const lat: number[] = [];
    await pool(c.nodes, 16, async (n, i) => {
      const s = performance.now();
      await http.json("PATCH", `${NODE_OBJECTS_PATH}/${n}`, { query: { fieldManager: "kpatch-operator", force: true }, contentType: "application/apply-patch+yaml", body: { apiVersion: "livepatch.kpatch.dev/v1alpha1", kind: "KernelLivePatchNode", metadata: { name: n, annotations: { "livepatch.kpatch.dev/projection-hash": `k${round}${i}` } }, spec: { patches: [{ ...patches[0]!, admitted: round === 3 }] } } });
      lat.push(performance.now() - s);
    });
    const ms = performance.now() - t0;
    const m1 = await scrapeApiServer(c.admin);
    console.log(`KubeHttp (maxSockets 4) conc 16 round ${round}: ${N} applies in ${ms.toFixed(0)} ms; client mean ${(lat.reduce((a, b) => a + b) / lat.length).toFixed(1)} ms, server mean ${meanMs(m0, m1, isSpec).toFixed(1)} ms`);
  }
  http.close();
} finally {
  c.admin.close();
  await c.cp.stop();
}
process.exit(0);
