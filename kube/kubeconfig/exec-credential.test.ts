/**
 * Exec credential plugins with a fake clock and a scripted plugin: what the plugin is told
 * (KUBERNETES_EXEC_INFO, env), how long its answer is kept (until expirationTimestamp), when it
 * runs again (expiry, a 401), and what an unusable answer says. One case spawns for real: the
 * installHint when the command is not installed.
 */
import { describe, expect, it } from "vitest";
import { KubeconfigError, type KubeconfigReason } from "./errors.ts";
import { execCredentials, spawnPlugin, type ExecClusterInfo, type PluginOutcome, type PluginRunner } from "./exec-credential.ts";
import type { ExecConfig } from "./schema.ts";

const V1 = "client.authentication.k8s.io/v1";
const V1BETA1 = "client.authentication.k8s.io/v1beta1";
const exec = (o: Partial<ExecConfig> = {}): ExecConfig => ({ apiVersion: V1, command: "get-token", args: ["--region", "x"], interactiveMode: "Never", ...o });
const CLUSTER: ExecClusterInfo = { server: "https://eks.example/prefix", "tls-server-name": "kube.internal", "certificate-authority-data": "Q0E=" };
const T0 = Date.parse("2026-12-03T12:00:00Z");
const at = (ms: number) => new Date(T0 + ms).toISOString();

interface Run {
  command: string;
  args: readonly string[];
  env: NodeJS.ProcessEnv;
}

const answer = (apiVersion: string, status: object): PluginOutcome => ({ kind: "exited", code: 0, stdout: JSON.stringify({ apiVersion, kind: "ExecCredential", status }), stderr: "" });

/** An exec credential source whose plugin answers each run with the next scripted outcome (the last one again and again). */
function source(outcomes: Array<object | PluginOutcome>, config: ExecConfig = exec()) {
  const clock = { now: T0 };
  const runs: Run[] = [];
  const run: PluginRunner = (command, args, env) => {
    runs.push({ command, args, env });
    const o = outcomes[Math.min(runs.length - 1, outcomes.length - 1)]!;
    return Promise.resolve("kind" in o ? (o as PluginOutcome) : answer(config.apiVersion, o));
  };
  const creds = execCredentials({ exec: config, user: "eks-admin", cluster: CLUSTER, now: () => clock.now, env: { PATH: "/usr/bin", HOME: "/home/admin" }, run });
  return { creds, runs, clock };
}

async function refusal(p: Promise<unknown>): Promise<{ reason: KubeconfigReason; message: string }> {
  const e = await p.then(() => undefined, (err: unknown) => err);
  if (!(e instanceof KubeconfigError)) throw new Error(`expected a KubeconfigError, got ${String(e)}`);
  return { reason: e.reason, message: e.message };
}

describe("exec credential: what the plugin is given", () => {
  it.each<[string, ExecConfig, object]>([
    ["v1, no cluster info", exec(), { apiVersion: V1, kind: "ExecCredential", spec: { interactive: false } }],
    ["v1beta1", exec({ apiVersion: V1BETA1, interactiveMode: "IfAvailable" }), { apiVersion: V1BETA1, kind: "ExecCredential", spec: { interactive: false } }],
    ["provideClusterInfo", exec({ provideClusterInfo: true }), { apiVersion: V1, kind: "ExecCredential", spec: { interactive: false, cluster: CLUSTER } }],
  ])("%s: KUBERNETES_EXEC_INFO", async (_, config, info) => {
    const { creds, runs } = source([{ token: "t" }], config);
    expect(await creds.current()).toEqual({ authorization: "Bearer t" });
    expect(JSON.parse(runs[0]!.env.KUBERNETES_EXEC_INFO!)).toEqual(info);
  });

  it("the command with its args, our environment with its env on top", async () => {
    const { creds, runs } = source([{ token: "t" }], exec({ env: [{ name: "AWS_PROFILE", value: "prod" }, { name: "HOME", value: "/plugin-home" }] }));
    await creds.current();
    expect(runs[0]).toMatchObject({ command: "get-token", args: ["--region", "x"], env: { PATH: "/usr/bin", HOME: "/plugin-home", AWS_PROFILE: "prod" } });
  });
});

describe("exec credential: what is kept, and for how long", () => {
  it("a token is kept until its expirationTimestamp, then the plugin runs again", async () => {
    const { creds, runs, clock } = source([
      { token: "first", expirationTimestamp: at(15 * 60_000) },
      { token: "second", expirationTimestamp: at(30 * 60_000) },
    ]);
    expect(await creds.current()).toEqual({ authorization: "Bearer first" });
    clock.now = T0 + 15 * 60_000 - 1;
    expect(await creds.current()).toEqual({ authorization: "Bearer first" });
    expect(runs).toHaveLength(1);
    clock.now = T0 + 15 * 60_000;
    expect(await creds.current()).toEqual({ authorization: "Bearer second" });
    expect(runs).toHaveLength(2);
  });

  it("without an expirationTimestamp, kept until the API server answers 401 to it", async () => {
    const { creds, runs, clock } = source([{ token: "first" }, { token: "second" }]);
    const first = await creds.current();
    clock.now = T0 + 365 * 86_400_000;
    expect(await creds.current()).toBe(first);
    creds.rejected(first);
    expect(await creds.current()).toEqual({ authorization: "Bearer second" });
    expect(runs).toHaveLength(2);
  });

  it("a 401 to credentials already replaced does not run the plugin again", async () => {
    const { creds, runs } = source([{ token: "first" }, { token: "second" }, { token: "third" }]);
    const first = await creds.current();
    creds.rejected(first);
    const second = await creds.current();
    creds.rejected(first); // a request sent with the old token, answered late
    expect(await creds.current()).toBe(second);
    expect(runs).toHaveLength(2);
  });

  it("requests waiting while the plugin runs share its one run", async () => {
    const { creds, runs } = source([{ token: "t" }]);
    const all = await Promise.all([creds.current(), creds.current(), creds.current()]);
    expect(new Set(all).size).toBe(1);
    expect(runs).toHaveLength(1);
  });

  it("a client certificate and key, with or without a token", async () => {
    const { creds } = source([{ clientCertificateData: "CERT PEM", clientKeyData: "KEY PEM", token: "t" }]);
    const c = await creds.current();
    expect(c).toEqual({ authorization: "Bearer t", cert: Buffer.from("CERT PEM"), key: Buffer.from("KEY PEM") });
  });

  it("a failed run is not kept: the next request runs the plugin again", async () => {
    const { creds, runs } = source([{ kind: "exited", code: 1, stdout: "", stderr: "token expired, run aws sso login" }, { token: "t" }]);
    expect(await refusal(creds.current())).toMatchObject({ reason: "ExecFailed", message: expect.stringMatching(/code 1.*aws sso login/) });
    expect(await creds.current()).toEqual({ authorization: "Bearer t" });
    expect(runs).toHaveLength(2);
  });
});

describe("exec credential: an unusable answer says why", () => {
  it.each<[string, PluginOutcome | object, KubeconfigReason, RegExp, ExecConfig?]>([
    ["not installed: kubectl's help and the installHint", { kind: "notFound" }, "ExecNotFound", /executable get-token not found \(users\[eks-admin\]\.user\.exec\.command\)[\s\S]*not installed[\s\S]*brew install get-token$/, exec({ installHint: "brew install get-token" })],
    ["killed by a signal", { kind: "exited", code: null, stdout: "", stderr: "" }, "ExecFailed", /exited with a signal/],
    ["not JSON", { kind: "exited", code: 0, stdout: "Please log in", stderr: "" }, "ExecFailed", /not JSON/],
    ["not an ExecCredential", { kind: "exited", code: 0, stdout: JSON.stringify({ apiVersion: V1, kind: "Status" }), stderr: "" }, "ExecFailed", /not an ExecCredential/],
    ["another apiVersion", answer(V1BETA1, { token: "t" }), "ExecFailed", /configured for client.authentication.k8s.io\/v1, returned client.authentication.k8s.io\/v1beta1/],
    ["no status", { kind: "exited", code: 0, stdout: JSON.stringify({ apiVersion: V1, kind: "ExecCredential" }), stderr: "" }, "ExecFailed", /no status/],
    ["neither token nor certificate", {}, "ExecFailed", /neither a token nor a certificate/],
    ["a certificate without its key", { clientCertificateData: "CERT" }, "ExecFailed", /only a certificate or only a key/],
    ["an expiry that is not a time", { token: "t", expirationTimestamp: "tomorrow" }, "ExecFailed", /"tomorrow" is not a time/],
  ])("%s", async (_, outcome, reason, message, config) => {
    const { creds } = source([outcome], config);
    expect(await refusal(creds.current())).toEqual({ reason, message: expect.stringMatching(message) });
  });

  it("a real spawn of a command that is not installed is notFound, not a crash", async () => {
    expect(await spawnPlugin("kpatch-no-such-credential-plugin", [], process.env)).toEqual({ kind: "notFound" });
  });

  it("a real spawn collects stdout, stderr and the exit code", async () => {
    expect(await spawnPlugin("sh", ["-c", 'echo "$GREETING"; echo oops >&2; exit 3'], { ...process.env, GREETING: "hi" })).toEqual({ kind: "exited", code: 3, stdout: "hi\n", stderr: "oops\n" });
  });
});
