import { describe, expect, it } from "vitest";
import { parseCommandLine, type Parsed } from "./args.ts";

describe("parseCommandLine", () => {
  it.each<[string, string[], Parsed]>([
    ["nothing: help", [], { ok: true, command: { verb: "help" } }],
    ["--help anywhere", ["status", "--help"], { ok: true, command: { verb: "help" } }],
    ["status of every patch", ["status"], { ok: true, command: { verb: "status", output: "table" } }],
    ["status of one, as yaml", ["status", "fix-nft", "-o", "yaml"], { ok: true, command: { verb: "status", patch: "fix-nft", output: "yaml" } }],
    ["cves --exposed for one CVE", ["cves", "CVE-2024-1086", "--exposed"], { ok: true, command: { verb: "cves", cve: "CVE-2024-1086", exposed: true, output: "table" } }],
    ["nodes as json, with a kubeconfig", ["--kubeconfig", "/k", "nodes", "-o=json"], { ok: true, command: { verb: "nodes", output: "json" }, kubeconfig: "/k" }],
    ["retry on a node", ["retry", "fix-nft", "--node", "n1"], { ok: true, command: { verb: "retry", patch: "fix-nft", node: "n1" } }],
    ["pause", ["pause", "fix-nft"], { ok: true, command: { verb: "pause", patch: "fix-nft" } }],
    ["resume", ["resume", "fix-nft"], { ok: true, command: { verb: "resume", patch: "fix-nft" } }],
    ["an unknown command", ["explode"], { ok: false, message: 'unknown command "explode"' }],
    ["an unknown option", ["status", "--colour"], { ok: false, message: expect.stringContaining("--colour") as unknown as string }],
    ["retry without a patch", ["retry"], { ok: false, message: "retry needs a KernelLivePatch name" }],
    ["pause with two patches", ["pause", "a", "b"], { ok: false, message: 'pause: unexpected argument "b"' }],
    ["nodes, some of them", ["nodes", "n1", "n2"], { ok: true, command: { verb: "nodes", output: "table", nodes: ["n1", "n2"] } }],
    ["status with two patches", ["status", "a", "b"], { ok: false, message: 'status: unexpected argument "b"' }],
    ["an output format kubectl has and this has not", ["status", "-o", "wide"], { ok: false, message: '-o must be json or yaml, not "wide"' }],
    ["-o on a write command", ["pause", "a", "-o", "json"], { ok: false, message: "pause takes no --output" }],
    ["--exposed outside cves", ["status", "--exposed"], { ok: false, message: "status takes no --exposed" }],
    ["--node outside retry", ["pause", "a", "--node", "n1"], { ok: false, message: "pause takes no --node" }],
  ])("%s", (_name, argv, want) => {
    expect(parseCommandLine(argv)).toEqual(want);
  });
});
