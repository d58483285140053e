/**
 * A module served as enterprises serve them: an HTTPS artifact server of the test's own on
 * loopback, its certificate from a private CA made with openssl, its files behind a bearer token.
 * The operator (in this process) and a simulated node (the real agent loop) run against the real API
 * server; the CA bundle and the token live in a ConfigMap and a Secret of the operator's namespace,
 * named by the patch's urlAccess. What the user sees: Loaded; TLS verification named; 401 named;
 * a server down, then up, retried with back-off, then Loaded; a rotated token used by the next
 * download; a missing Secret named; a wrong digest refused with nothing staged. The token never
 * reaches the patch, a status, an Event or a log line.
 *
 * The RBAC case renders the chart's own templates/rbac-url-access.yaml into a namespace of its
 * own and acts with ServiceAccount tokens: the operator's token writes the agent's Role (the API
 * server's escalation check included), and the agent's token then reads exactly the named Secret.
 */
import { existsSync, readdirSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { Writable } from "node:stream";
import { RbacAuthorizationV1Api } from "@kubernetes/client-node";
import { pino } from "pino";
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from "vitest";
import type { KernelLivePatch, NodeEntry } from "../../crds/schema.ts";
import { kubeconfigConnection } from "../../kube/connection.ts";
import { KubeApiError, KubeHttp } from "../../kube/http-client.ts";
import { buildSimModule } from "../../node-agent/sim/build-module.ts";
import { layoutSimHost } from "../../node-agent/sim/layout.ts";
import { startSimNode, type RunningSimNode } from "../../node-agent/sim/sim-node.ts";
import { loadOperatorConfig } from "../../operator/config.ts";
import { urlAccessRole } from "../../operator/agents/url-access-role.ts";
import { makePrivateCa, startArtifactServer, type ArtifactServer, type PrivateCa } from "../support/artifact-server.ts";
import type { ControlPlaneClient } from "../../scripts/dev/control-plane/index.ts";
import { helmClient } from "../support/helm.ts";
import { Cluster, controlPlane, entryOf, installCrd, kubeconfigPath, removeTree, sha256, startOperator, testLog, until } from "../support/klp.ts";

const NS = "klp-url-test";
const NODE = "url-n1";
const R = "6.1.0-56-amd64";
const TOKEN = "tok-url-1b6f0c2a";
const ROTATED = "tok-url-rotated-77d3";
const WRONG = "tok-url-wrong-4e1a";
const mods = {
  happy: buildSimModule({ name: "klp_url_happy", vermagic: R }),
  later: buildSimModule({ name: "klp_url_later", vermagic: R }),
  before: buildSimModule({ name: "klp_url_before", vermagic: R }),
  rotated: buildSimModule({ name: "klp_url_rotated", vermagic: R }),
};
const cluster = new Cluster();
const created: string[] = [];
const logLines: string[] = [];
let cp: ControlPlaneClient;
let corp: PrivateCa;
let server: ArtifactServer;
let operator: Awaited<ReturnType<typeof startOperator>>;
let agent: RunningSimNode;
let root: string;

const withCaAndToken = { caBundle: { configMapName: "corp-ca" }, bearerTokenSecret: { name: "artifactory" } };

function module(file: keyof typeof mods, urlAccess: Record<string, unknown> | undefined = withCaAndToken, digest = sha256(mods[file])) {
  return { kernelRelease: R, sha256: digest, url: `${server.base}/${file}.ko`, ...(urlAccess ? { urlAccess } : {}) };
}

async function apply(name: string, m: Record<string, unknown>): Promise<void> {
  created.push(name);
  await cluster.createPatch(name, { nodeSelector: { matchLabels: { "klp-test/suite": "url" } }, modules: [m] });
}

async function entryWhere(name: string, what: string, ok: (e: NodeEntry) => boolean, timeoutMs = 30_000): Promise<NodeEntry> {
  return until(`${name}: ${what}`, async () => {
    const e = entryOf(await cluster.getPatch(name), NODE);
    return e && ok(e) ? e : undefined;
  }, timeoutMs).catch(async (err: Error) => {
    throw new Error(`${err.message}; entry: ${JSON.stringify(entryOf(await cluster.getPatch(name), NODE))}`);
  });
}

async function putSecret(name: string, data: Record<string, string>): Promise<void> {
  const body = { apiVersion: "v1", kind: "Secret", metadata: { name, namespace: NS }, stringData: data };
  const r = await cp.kubectl(["apply", "--server-side", "--force-conflicts", "-f", "-"], { input: JSON.stringify(body) });
  if (r.code !== 0) throw new Error(r.stderr);
}

const stagedFiles = () => {
  const dir = path.join(root, "var/lib/kpatch");
  return existsSync(dir) ? readdirSync(dir, { recursive: true }).map(String).filter((f) => f.endsWith(".ko")) : [];
};
const livepatches = () => readdirSync(path.join(root, "sys/kernel/livepatch"));

beforeAll(async () => {
  cp = await controlPlane();
  await installCrd(cp);
  corp = await makePrivateCa("klp url-source test CA");
  server = await startArtifactServer({ tls: corp, token: TOKEN });
  for (const [name, bytes] of Object.entries(mods)) server.files.set(`${name}.ko`, bytes);
  await cluster.ensureNamespace(NS);
  await cluster.core.createNamespacedConfigMap({ namespace: NS, body: { metadata: { name: "corp-ca" }, data: { "ca.crt": corp.caPem } } });
  await putSecret("artifactory", { token: `${TOKEN}\n` });
  await cluster.createNode(NODE, { "klp-test/suite": "url" }, R);
  operator = await startOperator({ KLP_NAMESPACE: NS });
  root = await mkdtemp(path.join(tmpdir(), `klp-${NODE}-`));
  await layoutSimHost(root, { kernelRelease: R, transitionMs: 100 });
  // Every line the agent logs, at debug level: the token must be in none of them.
  const sink = new Writable({ write: (chunk: Buffer, _enc, done) => (logLines.push(chunk.toString()), done()) });
  agent = await startSimNode({ name: NODE, root, kubeconfig: kubeconfigPath(), log: pino({ level: "debug" }, sink), resyncMs: 2_000, accessNamespace: NS });
});

afterEach(async () => {
  for (const name of created.splice(0)) {
    await cluster.deletePatch(name);
    await until(`${name} deleted`, async () => (await cluster.getPatch(name)) === undefined, 30_000).catch(() => cluster.forceDeletePatch(name));
  }
  server.setToken(TOKEN);
  await putSecret("artifactory", { token: TOKEN });
});

afterAll(async () => {
  await agent?.stop();
  await operator?.stop();
  await server?.stop().catch(() => {});
  if (root) await removeTree(root);
  await cluster.deleteNode(NODE);
});

describe("a url source behind a private CA and a token", () => {
  it("loads with the CA bundle from the ConfigMap and the token from the Secret; the operator grants the agent exactly those objects", async () => {
    await apply("url-happy", module("happy"));
    await entryWhere("url-happy", "Loaded", (e) => e.phase === "Loaded");
    expect(livepatches()).toContain("klp_url_happy");
    expect(server.requests.filter((r) => r.path === "/happy.ko").map((r) => r.headers.authorization)).toEqual([`Bearer ${TOKEN}`]);
    const role = await until("the url-access Role", async () => {
      const r = await cluster.kc.makeApiClient(RbacAuthorizationV1Api).readNamespacedRole({ name: "kpatch-agent-url-access", namespace: NS });
      return (r.rules ?? []).length === 2 ? r : undefined;
    });
    expect(role.rules).toEqual([
      expect.objectContaining({ resources: ["secrets"], verbs: ["get"], resourceNames: ["artifactory"] }),
      expect.objectContaining({ resources: ["configmaps"], verbs: ["get"], resourceNames: ["corp-ca"] }),
    ]);
  });

  it("without the CA bundle: Failed, SourceUnavailable, the message names TLS verification; nothing staged", async () => {
    await apply("url-unknown-ca", module("happy", { bearerTokenSecret: { name: "artifactory" } }));
    const e = await entryWhere("url-unknown-ca", "Failed", (x) => x.phase === "Failed");
    expect(e.reason).toBe("SourceUnavailable");
    expect(e.message).toMatch(/TLS verification of the server's certificate failed/);
    expect(e.message).toContain("urlAccess.caBundle");
    expect(stagedFiles()).toEqual([]);
  });

  it("a wrong token: Failed with HTTP 401 Unauthorized and the Secret named, never the token", async () => {
    await putSecret("artifactory", { token: WRONG });
    await apply("url-401", module("happy"));
    const e = await entryWhere("url-401", "401", (x) => x.phase === "Failed" && /HTTP 401/.test(x.message ?? ""));
    expect(e.message).toMatch(/Unauthorized: the server did not accept the credentials from Secret klp-url-test\/artifactory key token/);
    expect(e.message).not.toContain(WRONG);
  });

  it("a Secret that does not exist is named, with what to do", async () => {
    await apply("url-no-secret", module("happy", { ...withCaAndToken, bearerTokenSecret: { name: "nexus" } }));
    const e = await entryWhere("url-no-secret", "Failed", (x) => x.phase === "Failed");
    expect(e.message).toMatch(/Secret klp-url-test\/nexus not found; create it in the operator's namespace/);
  });

  it("a wrong sha256: ChecksumMismatch, final, nothing staged", async () => {
    await apply("url-bad-digest", module("happy", withCaAndToken, "0".repeat(64)));
    const e = await entryWhere("url-bad-digest", "ChecksumMismatch", (x) => x.reason === "ChecksumMismatch");
    expect(e.phase).toBe("Failed");
    expect(stagedFiles()).toEqual([]);
  });

  it("the server down, then up: retried with back-off, then Loaded", async () => {
    await server.stop();
    const downAt = Date.now();
    await apply("url-down", module("later"));
    const e = await entryWhere("url-down", "Failed while the server is down", (x) => x.phase === "Failed");
    expect(e.reason).toBe("SourceUnavailable");
    expect(e.message).toMatch(/ECONNREFUSED/);
    await server.start();
    await entryWhere("url-down", "Loaded after the server came back", (x) => x.phase === "Loaded", 60_000);
    // Back-off, not a loop: one successful download once it was up, after SOURCE_RETRY's first delay (≥ 2.5 s).
    expect(server.requests.filter((r) => r.path === "/later.ko")).toHaveLength(1);
    expect(Date.now() - downAt).toBeGreaterThan(2_500);
  });

  it("a token rotated in the Secret is used by the next download", async () => {
    await apply("url-before", module("before"));
    await entryWhere("url-before", "Loaded", (x) => x.phase === "Loaded");
    server.setToken(ROTATED);
    await putSecret("artifactory", { token: ROTATED });
    await apply("url-rotated", module("rotated"));
    await entryWhere("url-rotated", "Loaded with the rotated token", (x) => x.phase === "Loaded");
    expect(server.requests.filter((r) => r.path === "/rotated.ko").map((r) => r.headers.authorization)).toEqual([`Bearer ${ROTATED}`]);
  });

  it("no token is ever in a patch, a node object, an Event or a log line", async () => {
    const everything = [
      JSON.stringify((await cp.kubectl(["get", "kernellivepatches,kernellivepatchnodes", "-o", "json"])).stdout),
      (await cp.kubectl(["get", "events", "-A", "-o", "json"])).stdout,
      logLines.join(""),
    ].join("\n");
    expect(logLines.length).toBeGreaterThan(10);
    for (const t of [TOKEN, ROTATED, WRONG]) expect(everything).not.toContain(t);
  });
});

describe("the chart's url-access RBAC, with ServiceAccount tokens", () => {
  const RBAC_NS = "klp-url-rbac";

  it("the operator's token writes the agent's Role (escalate on that Role only, no Secret read); the agent's token then reads exactly the named Secret", async () => {
    await cluster.ensureNamespace(RBAC_NS);
    for (const sa of ["kpatch-operator", "kpatch-agent"]) await cp.kubectl(["create", "serviceaccount", sa, "-n", RBAC_NS]);
    const helm = await helmClient({ binDir: inject("binDir") });
    const objs = (await helm.template({ release: "kpatch-operator", namespace: RBAC_NS })).filter((o) => /url-access/.test(o.metadata.name));
    expect(objs.map((o) => `${o.kind}/${o.metadata.name}`).sort()).toEqual([
      "Role/kpatch-agent-url-access",
      "Role/kpatch-operator-url-access-manager",
      "RoleBinding/kpatch-agent-url-access",
      "RoleBinding/kpatch-operator-url-access-manager",
    ]);
    const applied = await cp.kubectl(["apply", "-n", RBAC_NS, "-f", "-"], { input: objs.map((o) => JSON.stringify(o)).join("\n") });
    expect(applied.code, applied.stderr).toBe(0);
    for (const name of ["named", "other"]) await cluster.core.createNamespacedSecret({ namespace: RBAC_NS, body: { metadata: { name }, stringData: { token: name } } });

    const tokenOf = async (sa: string) => (await cp.kubectl(["create", "token", sa, "-n", RBAC_NS, "--duration=10m"])).stdout.trim();
    const as = async (sa: string) => new KubeHttp(kubeconfigConnection(await cp.tokenKubeconfig(await tokenOf(sa))));
    const operatorHttp = await as("kpatch-operator");
    const agentHttp = await as("kpatch-agent");
    const code = (p: Promise<unknown>) => p.then(() => 200, (e: KubeApiError) => e.code);
    const secret = (http: KubeHttp, name: string) => code(http.json("GET", `/api/v1/namespaces/${RBAC_NS}/secrets/${name}`));

    expect(await secret(operatorHttp, "named")).toBe(403); // the operator reads no Secret itself
    expect(await secret(agentHttp, "named")).toBe(403); // nothing named yet

    const cfg = loadOperatorConfig({ KLP_NAMESPACE: RBAC_NS });
    const patch = { spec: { modules: [{ kernelRelease: R, sha256: "a".repeat(64), url: "https://a.corp/x.ko", urlAccess: { bearerTokenSecret: { name: "named", key: "token" } } }] } } as unknown as KernelLivePatch;
    await urlAccessRole(operatorHttp, cfg, "url-access-test", testLog("rbac")).apply([patch]);
    await until("the agent may read the named Secret", async () => (await secret(agentHttp, "named")) === 200, 10_000);
    expect(await secret(agentHttp, "other")).toBe(403);
    const list = await code(agentHttp.json("GET", `/api/v1/namespaces/${RBAC_NS}/secrets`));
    expect(list).toBe(403);
    operatorHttp.close();
    agentHttp.close();
  });
});
