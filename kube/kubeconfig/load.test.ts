/** KUBECONFIG values read from real files: lists, missing files, relative paths, broken YAML. */
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { kubeconfigConnection } from "../connection.ts";
import { KubeconfigError } from "./errors.ts";
import { loadKubeconfig } from "./load.ts";

const dir = mkdtempSync(join(tmpdir(), "kubeconfig-load-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function write(name: string, content: object | string): string {
  const p = join(dir, name);
  mkdirSync(join(p, ".."), { recursive: true });
  writeFileSync(p, typeof content === "string" ? content : stringify(content));
  return p;
}

const config = (server: string, user: object, current?: string) => ({
  clusters: [{ name: "c", cluster: { server } }],
  users: [{ name: "u", user }],
  contexts: [{ name: "main", context: { cluster: "c", user: "u" } }],
  ...(current ? { "current-context": current } : {}),
});

const reasonOf = (f: () => unknown) => {
  try {
    f();
  } catch (e) {
    if (e instanceof KubeconfigError) return e.reason;
    throw e;
  }
  return "none";
};

describe("loading a KUBECONFIG value", () => {
  const a = write("a.yaml", config("https://a.example", { token: "ta" }, "main"));
  const b = write("b.yaml", config("https://b.example", { token: "tb" }, "main"));

  it("a list: missing files and empty items skipped, the first file wins", () => {
    const c = kubeconfigConnection(`${join(dir, "missing.yaml")}::${a}:${b}:${a}`);
    expect(c.server).toBe("https://a.example");
    expect(c.token?.()).toBe("ta");
  });

  it("a list in the other order", () => {
    expect(kubeconfigConnection(`${b}:${a}`).server).toBe("https://b.example");
  });

  it.each([
    ["a single missing file (an explicit path)", () => join(dir, "missing.yaml"), "NoFile"],
    ["a list whose files are all missing", () => `${join(dir, "x.yaml")}:${join(dir, "y.yaml")}`, "NoFile"],
    ["YAML that does not parse", () => write("broken.yaml", "clusters: [\n  - {"), "Invalid"],
    ["clusters that are not a list", () => write("bad-shape.yaml", { clusters: { c: {} } }), "Invalid"],
    ["a certificate file that cannot be read", () => write("no-ca.yaml", config("https://a.example", { "client-certificate": "gone.crt", "client-key": "gone.key" })), "Unreadable"],
  ])("%s: a KubeconfigError", (_, path, reason) => {
    expect(reasonOf(() => kubeconfigConnection(path()))).toBe(reason);
  });

  it("an empty file in a list is an empty config, not an error", () => {
    const empty = write("empty.yaml", "");
    expect(loadKubeconfig(`${empty}:${a}`).clusters.size).toBe(1);
  });

  it("relative certificate paths are read from the file's own directory", () => {
    write("sub/pki/ca.crt", "CA PEM");
    write("sub/pki/u.crt", "CERT PEM");
    write("sub/pki/u.key", "KEY PEM");
    const p = write("sub/config", {
      ...config("https://a.example", { "client-certificate": "pki/u.crt", "client-key": "pki/u.key" }),
      clusters: [{ name: "c", cluster: { server: "https://a.example", "certificate-authority": "pki/ca.crt" } }],
    });
    const c = kubeconfigConnection(p);
    expect([c.ca?.toString(), c.cert?.toString(), c.key?.toString()]).toEqual(["CA PEM", "CERT PEM", "KEY PEM"]);
  });
});

describe("users the old reader sent as anonymous", () => {
  it.each([
    ["a legacy gcp auth-provider is refused, naming the field", { "auth-provider": { name: "gcp" } }, /users\[u\]\.user\.auth-provider \(gcp\)/],
    ["an unknown user field is refused, naming it", { "oidc-token": "x" }, /users\[u\]\.user\.oidc-token/],
  ])("%s", (_, user, message) => {
    const p = write(`refused-${Math.random()}.yaml`, config("https://a.example", user, "main"));
    expect(() => kubeconfigConnection(p)).toThrow(message);
  });

  it("an exec user gets credentials from its plugin", () => {
    const p = write("exec.yaml", config("https://a.example", { exec: { apiVersion: "client.authentication.k8s.io/v1", command: "aws", interactiveMode: "Never" } }, "main"));
    expect(kubeconfigConnection(p).credentials).toBeDefined();
  });
});

