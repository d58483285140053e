/**
 * The agent as a process (node-agent/main.ts, as the DaemonSet runs it): killed in the middle of a
 * load and started again, it converges without loading twice; stopped with SIGTERM, it leaves the
 * patch loaded. A patch's life does not follow the agent's.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildSimModule } from "../../node-agent/sim/build-module.ts";
import { layoutSimHost } from "../../node-agent/sim/layout.ts";
import { Cluster, REPO, condition, controlPlane, entryOf, installCrd, kubeconfigPath, removeTree, sha256, startOperator, until } from "../support/klp.ts";

const NS = "klp-agent-process-test";
const NODE = "ap-n1";
const RELEASE = "6.1.0-56-amd64";
const module = buildSimModule({ name: "klp_proc_fix", vermagic: RELEASE });
const cluster = new Cluster();
let operator: Awaited<ReturnType<typeof startOperator>>;
let root: string;
const children: ChildProcess[] = [];

function startAgent(): { child: ChildProcess; output: () => string } {
  const child = spawn(process.execPath, ["--import", "tsx", path.join(REPO, "node-agent/main.ts")], {
    cwd: REPO,
    env: { ...process.env, NODE_NAME: NODE, KPATCH_HOST_ROOT: root, KPATCH_LOADER: "sim", KUBECONFIG: kubeconfigPath(), LOG_LEVEL: "info" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout.on("data", (c: Buffer) => (out += c.toString()));
  child.stderr.on("data", (c: Buffer) => (out += c.toString()));
  children.push(child);
  return { child, output: () => out };
}

const exited = (child: ChildProcess) => new Promise<void>((r) => (child.exitCode !== null ? r() : child.once("exit", () => r())));
const simState = () => JSON.parse(readFileSync(path.join(root, ".kpatch-sim/state.json"), "utf8")) as { insmods: Record<string, number>; modules: Array<{ name: string; patch: { enabled: boolean; transition: unknown } | null }> };
const live = () => existsSync(path.join(root, "sys/kernel/livepatch/klp_proc_fix"));

beforeAll(async () => {
  await installCrd(await controlPlane());
  await cluster.putModuleConfigMap(NS, "modules", { "fix.ko": module });
  await cluster.createNode(NODE, { "klp-test/suite": "agent-process" });
  root = await mkdtemp(path.join(tmpdir(), "klp-ap-"));
  // A slow transition, so the agent can be killed in the middle of it.
  await layoutSimHost(root, { kernelRelease: RELEASE, transitionMs: 6000 });
  operator = await startOperator({ KLP_NAMESPACE: NS });
});

afterAll(async () => {
  for (const c of children) c.kill("SIGKILL");
  await cluster.forceDeletePatch("ap-fix");
  await operator?.stop();
  await cluster.deleteNode(NODE);
  await removeTree(root);
});

describe("the agent process", () => {
  it("killed during the transition and restarted, converges to Loaded without a second insmod", async () => {
    const first = startAgent();
    await cluster.createPatch("ap-fix", {
      modules: [{ kernelRelease: RELEASE, sha256: sha256(module), configMap: { namespace: NS, name: "modules", key: "fix.ko" } }],
      nodeSelector: { matchLabels: { "klp-test/suite": "agent-process" } },
    });
    await until("the transition to start", () => simState().modules.some((m) => m.name === "klp_proc_fix" && m.patch?.transition), 60_000, 50).catch((e: Error) => {
      throw new Error(`${e.message}\nagent output:\n${first.output()}`);
    });
    first.child.kill("SIGKILL");
    await exited(first.child);
    // The operator copies the node's entry into the patch's status a moment later (its roll-up is
    // spaced): the dead agent's last word is Loading.
    await until("the Loading entry in the patch's status", async () => entryOf(await cluster.getPatch("ap-fix"), NODE)?.phase === "Loading", 30_000);

    const second = startAgent();
    const p = await until("Loaded", async () => {
      const p = await cluster.getPatch("ap-fix");
      return entryOf(p, NODE)?.phase === "Loaded" && condition(p, "Ready")?.status === "True" ? p : undefined;
    }, 60_000).catch((e: Error) => {
      throw new Error(`${e.message}\nagent output:\n${second.output()}`);
    });
    expect(entryOf(p, NODE)).toMatchObject({ enabled: true, transition: false, tainted: 45056, taintFlags: "OEK" });
    expect(simState().insmods.klp_proc_fix).toBe(1);
    // The restarted agent's log is JSON lines from pino.
    const lines = second.output().trim().split("\n").filter((l) => l.startsWith("{"));
    expect(lines.length).toBeGreaterThan(0);
    for (const l of lines) expect(() => JSON.parse(l)).not.toThrow();

    // SIGTERM: the agent stops; the patch stays in the kernel.
    second.child.kill("SIGTERM");
    await exited(second.child);
    expect(second.child.exitCode).toBe(0);
    expect(live()).toBe(true);
    expect(second.output()).toContain("loaded patches stay loaded");
  });

  it("a new agent on the same host reports Loaded without touching the kernel", async () => {
    const before = simState().insmods.klp_proc_fix;
    const third = startAgent();
    await new Promise((r) => setTimeout(r, 3000));
    const p = await cluster.getPatch("ap-fix");
    expect(entryOf(p, NODE)?.phase).toBe("Loaded");
    expect(simState().insmods.klp_proc_fix).toBe(before);
    expect(live()).toBe(true);
    third.child.kill("SIGTERM");
    await exited(third.child);
  });
});
