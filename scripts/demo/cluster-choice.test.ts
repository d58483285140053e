import { describe, expect, it } from "vitest";
import { chooseCluster, missingKubeconfigMessage, type ClusterChoice } from "./cluster-choice.ts";

const present = new Set(["/home/u/.kube/config", "/etc/k/admin.conf"]);
const exists = (f: string) => present.has(f);

describe("chooseCluster", () => {
  it.each<[string, string | undefined, ClusterChoice]>([
    ["unset", undefined, { kind: "local" }],
    ["empty", "", { kind: "local" }],
    ["only separators", "::", { kind: "local" }],
    ["an existing file", "/home/u/.kube/config", { kind: "existing", kubeconfig: "/home/u/.kube/config" }],
    ["a list with one existing file", "/nope:/etc/k/admin.conf", { kind: "existing", kubeconfig: "/nope:/etc/k/admin.conf" }],
    ["a file that does not exist", "/home/u/.kube/typo", { kind: "missing", kubeconfig: "/home/u/.kube/typo", paths: ["/home/u/.kube/typo"] }],
    ["a list where none exists", "/a::/b", { kind: "missing", kubeconfig: "/a::/b", paths: ["/a", "/b"] }],
  ])("%s", (_, env, want) => {
    expect(chooseCluster(env, exists)).toEqual(want);
  });
});

describe("missingKubeconfigMessage", () => {
  it("names the missing file and both ways out", () => {
    const msg = missingKubeconfigMessage({ kind: "missing", kubeconfig: "/x", paths: ["/x"] });
    expect(msg).toContain("KUBECONFIG=/x, but /x does not exist.");
    expect(msg).toContain("point KUBECONFIG at its kubeconfig file");
    expect(msg).toContain("unset KUBECONFIG");
  });

  it("lists every path of a list", () => {
    expect(missingKubeconfigMessage({ kind: "missing", kubeconfig: "/a:/b", paths: ["/a", "/b"] })).toContain("none of /a, /b exists");
  });
});
