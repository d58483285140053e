import { describe, expect, it } from "vitest";
import { EXIT, kubeconfigPath, main, type PluginIo } from "./cli.ts";

/** An io that must never reach the API server: these cases end before it is needed. */
function io(): PluginIo & { out: string; err: string } {
  const o = {
    out: "",
    err: "",
    stdout: (t: string) => void (o.out += t),
    stderr: (t: string) => void (o.err += t),
    env: {},
    now: () => new Date(0),
    connect: (): never => {
      throw new Error("no API server in a unit test");
    },
  };
  return o;
}

describe("main", () => {
  it("prints the usage for --help and exits 0", async () => {
    const i = io();
    expect(await main(["--help"], i)).toBe(EXIT.OK);
    expect(i.out).toContain("kubectl klp cves [CVE] [--exposed]");
  });
  it("refuses a bad command line with exit 2 on stderr", async () => {
    const i = io();
    expect(await main(["retry"], i)).toBe(EXIT.USAGE);
    expect(i.err).toBe("error: retry needs a KernelLivePatch name\nSee 'kubectl klp --help'.\n");
    expect(i.out).toBe("");
  });
  it("reports a failure to connect with exit 1", async () => {
    const i = io();
    expect(await main(["nodes"], i)).toBe(EXIT.FAILED);
    expect(i.err).toBe("error: no API server in a unit test\n");
  });
});

describe("kubeconfigPath", () => {
  it.each<[string, string | undefined, Record<string, string>, string]>([
    ["the flag first", "/flag", { KUBECONFIG: "/env" }, "/flag"],
    ["then $KUBECONFIG", undefined, { KUBECONFIG: "/env" }, "/env"],
    ["a $KUBECONFIG list whole (merged as kubectl merges it)", undefined, { KUBECONFIG: ":/a:/b" }, ":/a:/b"],
    ["an empty $KUBECONFIG: ~/.kube/config", undefined, { KUBECONFIG: ":", HOME: "/home/admin" }, "/home/admin/.kube/config"],
    ["then ~/.kube/config", undefined, { HOME: "/home/admin" }, "/home/admin/.kube/config"],
  ])("%s", (_name, flag, env, want) => {
    expect(kubeconfigPath(flag, env)).toBe(want);
  });
});
