/**
 * The README's run command, as a user runs it: `npm start` with no cluster configured reaches
 * Ready for the sample patch and stops cleanly.
 */
import { spawn } from "node:child_process";
import { describe, expect, it } from "vitest";
import { REPO } from "../support/klp.ts";

describe("npm start (the embedded demo)", () => {
  it("brings up a local control plane, rolls the sample patch to Ready, shows kubectl get klp, and stops", async () => {
    const env = { ...process.env };
    delete env.KUBECONFIG;
    const started = Date.now();
    const child = spawn("npm", ["start", "--silent", "--", "--exit-when-ready"], { cwd: REPO, env, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (c: Buffer) => (out += c.toString()));
    child.stderr.on("data", (c: Buffer) => (out += c.toString()));
    const code = await new Promise<number | null>((r) => child.on("exit", r));
    expect(code, out).toBe(0);
    expect(out).toMatch(/sim-node-4\s+NotApplicable/);
    for (const n of [1, 2, 3]) expect(out).toMatch(new RegExp(`sim-node-${n}\\s+Loaded\\s+livepatch_cve_2024_1086 tainted=45056 \\(OEK\\)`));
    expect(out).toMatch(/Ready after [\d.]+ s/);
    expect(out).toMatch(/cve-2024-1086\s+3\/3\s+0\s+Loaded\s+Loaded/);
    console.log(`demo: ${out.match(/Ready after [\d.]+ s/)?.[0]}, whole run ${((Date.now() - started) / 1000).toFixed(1)} s`);
  });
});
