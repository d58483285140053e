/**
 * Kubeconfig variants, from YAML to what the connection is built from: KUBECONFIG lists merged as
 * kubectl merges them, the server's path prefix, tls-server-name, exec plugins, and every field we
 * cannot honour refused by name. Pure: the files are only named, never read.
 */
import { describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { KubeconfigError, type KubeconfigReason } from "./errors.ts";
import { parseKubeconfig } from "./load.ts";
import { mergeKubeconfigs } from "./merge.ts";
import { planConnection, type ConnectionPlan } from "./plan.ts";
import type { ExecConfig } from "./schema.ts";

const SERVER = "https://10.0.0.1:6443";

/** One file's content: a context `main` (cluster c, user u) unless overridden. */
function file(o: { cluster?: object; user?: object; current?: string | null; extra?: object } = {}): object {
  return {
    apiVersion: "v1",
    kind: "Config",
    clusters: [{ name: "c", cluster: { server: SERVER, ...o.cluster } }],
    users: [{ name: "u", user: o.user ?? {} }],
    contexts: [{ name: "main", context: { cluster: "c", user: "u" } }],
    ...(o.current === null ? {} : { "current-context": o.current ?? "main" }),
    ...o.extra,
  };
}

function plan(files: Array<[path: string, content: object]>, context?: string): ConnectionPlan {
  return planConnection(mergeKubeconfigs(files.map(([p, c]) => ({ file: p, config: parseKubeconfig(p, stringify(c)) }))), { context });
}

const one = (content: object, context?: string) => plan([["/home/admin/.kube/config", content]], context);

function refusal(f: () => unknown): { reason: KubeconfigReason; field: string | undefined; message: string } {
  try {
    f();
  } catch (e) {
    if (e instanceof KubeconfigError) return { reason: e.reason, field: e.field, message: e.message };
    throw e;
  }
  throw new Error("no error");
}

const v1Exec: ExecConfig = { apiVersion: "client.authentication.k8s.io/v1", command: "aws", args: ["eks", "get-token"], interactiveMode: "Never" };

describe("what the connection is built from", () => {
  it.each<[string, () => ConnectionPlan, Partial<ConnectionPlan>]>([
    ["a server path prefix is kept, a trailing slash dropped", () => one(file({ cluster: { server: "https://rancher.example/k8s/clusters/c-x/" } })), { server: "https://rancher.example/k8s/clusters/c-x" }],
    ["tls-server-name", () => one(file({ cluster: { "tls-server-name": "kube.internal" } })), { tlsServerName: "kube.internal" }],
    ["insecure-skip-tls-verify", () => one(file({ cluster: { "insecure-skip-tls-verify": true } })), { insecureSkipTlsVerify: true, ca: undefined }],
    ["certificate-authority-data decoded", () => one(file({ cluster: { "certificate-authority-data": Buffer.from("PEM").toString("base64") } })), { ca: { data: Buffer.from("PEM") } }],
    ["certificate-authority relative to its file", () => one(file({ cluster: { "certificate-authority": "pki/ca.crt" } })), { ca: { file: "/home/admin/.kube/pki/ca.crt" } }],
    ["an empty user is anonymous", () => one(file()), { auth: { kind: "none" }, clientCert: undefined }],
    ["token", () => one(file({ user: { token: "t0k" } })), { auth: { kind: "token", token: "t0k" } }],
    ["token wins over tokenFile (client-go)", () => one(file({ user: { token: "t0k", tokenFile: "tok" } })), { auth: { kind: "token", token: "t0k" } }],
    ["tokenFile relative to its file", () => one(file({ user: { tokenFile: "tok" } })), { auth: { kind: "tokenFile", file: "/home/admin/.kube/tok" } }],
    ["basic auth", () => one(file({ user: { username: "admin", password: "pw" } })), { auth: { kind: "basic", username: "admin", password: "pw" } }],
    [
      "client certificate files and a token together (kubectl sends both)",
      () => one(file({ user: { "client-certificate": "/pki/u.crt", "client-key": "u.key", token: "t" } })),
      { clientCert: { cert: { file: "/pki/u.crt" }, key: { file: "/home/admin/.kube/u.key" } }, auth: { kind: "token", token: "t" } },
    ],
    ["exec v1", () => one(file({ user: { exec: v1Exec } })), { auth: { kind: "exec", user: "u", exec: v1Exec, clusterConfig: undefined } }],
    [
      "exec v1beta1 without interactiveMode is IfAvailable (kubectl's default)",
      () => one(file({ user: { exec: { apiVersion: "client.authentication.k8s.io/v1beta1", command: "gke-gcloud-auth-plugin" } } })),
      { auth: { kind: "exec", user: "u", exec: { apiVersion: "client.authentication.k8s.io/v1beta1", command: "gke-gcloud-auth-plugin", interactiveMode: "IfAvailable" }, clusterConfig: undefined } },
    ],
    [
      "exec command with a slash is relative to its file; the cluster's exec extension goes to the plugin",
      () =>
        one(
          file({
            user: { exec: { ...v1Exec, command: "./bin/get-token" } },
            cluster: { extensions: [{ name: "client.authentication.k8s.io/exec", extension: { audience: "x" } }] },
          }),
        ),
      { auth: { kind: "exec", user: "u", exec: { ...v1Exec, command: "/home/admin/.kube/bin/get-token" }, clusterConfig: { audience: "x" } } },
    ],
    ["harmless fields are accepted (extensions, disable-compression, namespace)", () => one(file({ cluster: { "disable-compression": true, extensions: [] }, user: { extensions: [] } })), { server: SERVER }],
    ["--context picks another context", () => one(file({ extra: { contexts: [{ name: "main", context: { cluster: "c", user: "u" } }, { name: "other", context: { cluster: "c", user: "u", namespace: "x" } }] } }), "other"), { context: "other" }],
    ["a single context without current-context is that one", () => one(file({ current: null })), { context: "main" }],
  ])("%s", (_, run, expected) => {
    expect(run()).toMatchObject(expected);
  });
});

describe("KUBECONFIG lists (kubectl's merge)", () => {
  const a = file({ cluster: { server: "https://a.example" }, user: { token: "from-a" } });
  const b = {
    ...file({ cluster: { server: "https://b.example" }, user: { token: "from-b" }, current: "b-ctx" }),
    contexts: [
      { name: "main", context: { cluster: "c", user: "u" } },
      { name: "b-ctx", context: { cluster: "b-only", user: "u" } },
    ],
    clusters: [
      { name: "c", cluster: { server: "https://b.example" } },
      { name: "b-only", cluster: { server: "https://b-only.example/prefix" } },
    ],
  };

  it.each<[string, Array<[string, object]>, Partial<ConnectionPlan>]>([
    ["the first file's current-context and entries win", [["/a", a], ["/b", b]], { context: "main", server: "https://a.example", auth: { kind: "token", token: "from-a" } }],
    ["swapped: the other file wins", [["/b", b], ["/a", a]], { context: "b-ctx", server: "https://b-only.example/prefix", auth: { kind: "token", token: "from-b" } }],
    [
      "current-context from the first file that sets it; the entries it names from any file",
      [["/a", file({ cluster: { server: "https://a.example" }, user: { token: "from-a" }, current: null })], ["/b", b]],
      { context: "b-ctx", server: "https://b-only.example/prefix", auth: { kind: "token", token: "from-a" } },
    ],
    [
      "each entry's relative paths are relative to its own file",
      [["/etc/kube/users.yaml", { users: [{ name: "u", user: { tokenFile: "tok" } }] }], ["/home/x/cfg", file({ cluster: { "certificate-authority": "ca.crt" } })]],
      { ca: { file: "/home/x/ca.crt" }, auth: { kind: "tokenFile", file: "/etc/kube/tok" } },
    ],
  ])("%s", (_, files, expected) => {
    expect(plan(files)).toMatchObject(expected);
  });
});

describe("refused by name, never sent anonymous", () => {
  const u = "users[u].user";
  const c = "clusters[c].cluster";
  it.each<[string, object, KubeconfigReason, string, RegExp?]>([
    ["legacy auth-provider (gcp)", file({ user: { "auth-provider": { name: "gcp", config: {} } } }), "Unsupported", `${u}.auth-provider`, /auth-provider \(gcp\).*gke-gcloud-auth-plugin/],
    ["legacy auth-provider (oidc)", file({ user: { "auth-provider": { name: "oidc" } } }), "Unsupported", `${u}.auth-provider`, /oidc/],
    ["proxy-url", file({ cluster: { "proxy-url": "socks5://proxy:1080" } }), "Unsupported", `${c}.proxy-url`],
    ["impersonation", file({ user: { token: "t", as: "jane" } }), "Unsupported", `${u}.as`],
    ["an unknown user field", file({ user: { token: "t", "token-exchange": {} } }), "Unsupported", `${u}.token-exchange`],
    ["an unknown exec field", file({ user: { exec: { ...v1Exec, pluginPolicy: {} } } }), "Unsupported", `${u}.exec.pluginPolicy`],
    ["exec v1alpha1 (removed in 1.24)", file({ user: { exec: { ...v1Exec, apiVersion: "client.authentication.k8s.io/v1alpha1" } } }), "Invalid", `${u}.exec.apiVersion`, /v1beta1/],
    ["exec v1 without interactiveMode (kubectl requires it)", file({ user: { exec: { ...v1Exec, interactiveMode: undefined } } }), "Invalid", `${u}.exec.interactiveMode`],
    ["exec interactiveMode Always: we have no terminal", file({ user: { exec: { ...v1Exec, interactiveMode: "Always" } } }), "Unsupported", `${u}.exec.interactiveMode`],
    ["exec beside a token", file({ user: { token: "t", exec: v1Exec } }), "Conflict", `${u}.exec`],
    ["token and basic auth", file({ user: { token: "t", username: "a", password: "b" } }), "Conflict", `${u}.username`],
    ["certificate without a key", file({ user: { "client-certificate-data": "eA==" } }), "Conflict", `${u}.client-key`],
    ["certificate data and file", file({ user: { "client-certificate-data": "eA==", "client-certificate": "f", "client-key": "k" } }), "Conflict", `${u}.client-certificate`],
    ["CA data and file", file({ cluster: { "certificate-authority-data": "eA==", "certificate-authority": "f" } }), "Conflict", `${c}.certificate-authority`],
    ["a CA with insecure-skip-tls-verify", file({ cluster: { "certificate-authority": "f", "insecure-skip-tls-verify": true } }), "Conflict", `${c}.insecure-skip-tls-verify`],
    ["plain http", file({ cluster: { server: "http://127.0.0.1:8080" } }), "Unsupported", `${c}.server`],
    ["a server that is not a URL", file({ cluster: { server: "not a url" } }), "Invalid", `${c}.server`],
    ["a token that is not a string", file({ user: { token: 42 } }), "Invalid", `${u}.token`],
    ["a missing current context", file({ current: "gone" }), "NoContext", "current-context"],
    ["no current-context among several", { ...file({ current: null }), contexts: [{ name: "a", context: { cluster: "c", user: "u" } }, { name: "b", context: { cluster: "c", user: "u" } }] }, "NoContext", "current-context"],
    ["a context naming a missing user", { ...file(), users: [] }, "NoContext", "contexts[main].context.user"],
    ["a context naming a missing cluster", { ...file(), clusters: [] }, "NoContext", "contexts[main].context.cluster"],
  ])("%s", (_, content, reason, field, message) => {
    const r = refusal(() => one(content));
    expect(r).toMatchObject({ reason, field });
    expect(r.message).toContain(field.replace(/^current-context$/, ""));
    if (message) expect(r.message).toMatch(message);
  });

  it("an unsupported field in a user no context selects does not matter", () => {
    const content = { ...file({ user: { token: "t" } }), users: [{ name: "u", user: { token: "t" } }, { name: "gke", user: { "auth-provider": { name: "gcp" } } }] };
    expect(one(content).auth).toEqual({ kind: "token", token: "t" });
  });
});
