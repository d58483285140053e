/**
 * Watches that go silent: the operator and the agents reach the API server through a TCP proxy
 * that freezes every open connection in the middle of a rollout (held open, nothing forwarded,
 * no FIN or RST, as a dead NAT entry or a partition leaves it). Only new connections work. The
 * agents' silence watchdog and request timeouts, and the operator's watch inactivity timeout,
 * must notice, reconnect and relist; the rollout then completes.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildSimModule } from "../../../node-agent/sim/build-module.ts";
import {
  RELEASE,
  TestApi,
  deleteAndWaitGone,
  entryOf,
  insmods,
  kubeconfigVia,
  livepatches,
  partialFiles,
  removeHost,
  sampleValue,
  serverPort,
  simHost,
  startAgentAt,
  startOperatorAt,
  waitReady,
  type InProcessAgent,
} from "../../support/faults.ts";
import { FreezableProxy } from "../../support/freezable-proxy.ts";
import { controlPlane, installCrd, kubeconfigPath, sha256, until } from "../../support/klp.ts";

const NS = "klp-fault-silent";
const MODULE = "klp_silent_fix";
const PATCH = "fw-fix";
const module = buildSimModule({ name: MODULE, vermagic: RELEASE });
const api = new TestApi(kubeconfigPath());
const NODES = ["fw-1", "fw-2"];
const agents: InProcessAgent[] = [];
let proxy: FreezableProxy;
let operator: Awaited<ReturnType<typeof startOperatorAt>>;

beforeAll(async () => {
  await installCrd(await controlPlane());
  await api.putConfigMap(NS, "modules", { "fix.ko": module });
  proxy = await FreezableProxy.start({ host: "127.0.0.1", port: serverPort(kubeconfigPath()) });
  const via = await kubeconfigVia(kubeconfigPath(), proxy.port);
  for (const node of NODES) {
    await api.createNode(node, { "klp-test/suite": "fault-silent" });
    // A 4 s watch timeout: a watch silent for 9 s is dropped and relisted.
    agents.push(await startAgentAt(via, { name: node, root: await simHost(node, 2000), watchTimeoutSeconds: 4, requestTimeoutMs: 3000 }));
  }
  operator = await startOperatorAt(via, { KLP_NAMESPACE: NS }, { requestTimeoutMs: 5000 });
});

/**
 * A teardown step bounded in time: once in six clean-clone runs this hook outlived vitest's 300 s
 * after the test had passed (which step hung is not known yet); say so and go on cleaning up.
 */
async function bounded(what: string, step: () => Promise<unknown>): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<"late">((r) => (timer = setTimeout(() => r("late"), 30_000)));
  const outcome = await Promise.race([step().then(() => "done" as const), late]);
  clearTimeout(timer);
  if (outcome === "late") console.warn(`silent-watch teardown: ${what} did not finish within 30 s; going on`);
}

afterAll(async () => {
  for (const a of agents) await bounded(`stopping agent ${a.name}`, () => a.stop());
  await bounded("stopping the operator", async () => operator?.stop());
  await api.forceDeletePatch(PATCH);
  await proxy?.close();
  for (const node of NODES) await api.deleteNode(node);
  for (const a of agents) await removeHost(a.root);
  api.close();
});

describe("watches that go silent", () => {
  it("are noticed and relisted by the agents and the operator; the rollout completes", async () => {
    const started = Date.now();
    await api.createPatch(PATCH, {
      modules: [{ kernelRelease: RELEASE, sha256: sha256(module), configMap: { namespace: NS, name: "modules", key: "fix.ko" } }],
      nodeSelector: { matchLabels: { "klp-test/suite": "fault-silent" } },
      rollout: { maxUnavailable: 1 },
    });
    // Freeze while the first node loads: its Loaded reaches the operator only through a new
    // watch, and the second node learns of its admission only through a relist.
    const first = await until("the first node loading", async () => {
      const { patch: p, admitted } = await api.admitted(PATCH);
      const n = admitted[0];
      return n && entryOf(p, n)?.phase === "Loading" ? n : undefined;
    }, 60_000, 50);
    const second = NODES.find((n) => n !== first)!;
    const frozen = proxy.freeze();
    // Every client's watches are frozen: over HTTP/2 one connection of each agent and of the
    // operator carries its watches and its requests.
    expect(frozen).toBeGreaterThanOrEqual(3);
    const frozenAt = Date.now();

    const done = await waitReady(api, PATCH, 150_000);
    expect(done.status?.summary).toMatchObject({ ready: "2/2", loaded: 2 });
    for (const a of agents) {
      expect(insmods(a.root, MODULE), a.name).toBe(1);
      expect(livepatches(a.root), a.name).toEqual([MODULE]);
      expect(partialFiles(a.root), a.name).toEqual([]);
    }
    // The second agent was admitted while its watch was frozen: its watchdog found the silence.
    const restarts = agents.find((a) => a.name === second)!.metrics.render();
    expect(sampleValue(restarts, "kpatch_agent_watch_restarts_total", { resource: "kernellivepatchnodes", cause: "silent" })).toBeGreaterThanOrEqual(1);

    await deleteAndWaitGone(api, PATCH, 90_000);
    console.log(`silent-watch fault: ${Date.now() - started} ms (${Date.now() - frozenAt} ms after freezing ${frozen} connections)`);
  });
});
