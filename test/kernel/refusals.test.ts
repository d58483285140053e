// The kernel's own refusals of a livepatch module, each under the kernel command line that causes
// it: a guest booted with lockdown=integrity and one with module.sig_enforce=1 (both side by side,
// each with its own fresh disk). In each, klp_test_v1 unsigned and klp_test_v1_signed (a valid
// signature from a key no keyring of the kernel holds) meet a bare insmod (the kernel's errno and
// log line) and the agent's `load <file>` (its reason). kernel.ftrace_enabled=0 and
// kernel.modules_disabled=1 are sysctls: they run at the end of real-kernel.test.ts's boot 2.
import { describe, expect, it } from "vitest";
import { arr, expectRefused, obj, run } from "./facts.ts";
import { kernelSuite, TEST_TIMEOUT_MS, type BootSpec } from "./harness.ts";

const LOCKDOWN: BootSpec = { plan: "lockdown", cmdline: ["lockdown=integrity", "kpatch.enable=0"] };
const SIG_ENFORCE: BootSpec = { plan: "sig-enforce", cmdline: ["module.sig_enforce=1", "kpatch.enable=0"] };

const suite = kernelSuite("refusals");

/** Nothing of klp_test_v1 loaded, nothing left under /var/lib/kpatch (staged or being loaded). */
function expectNothingLeft(after: Record<string, unknown>): void {
  expect(after.sysModule, "klp_test_v1 is not in /sys/module").toBe(false);
  expect(after.livepatch).toBe(false);
  expect(after.kpatchTree, "nothing staged or left in /var/lib/kpatch").toEqual([]);
}

describe("real kernel: the kernel's refusals by boot option", () => {
  it("both guests boot (lockdown=integrity, module.sig_enforce=1) and report every step", async (ctx) => {
    suite.skipIfUnavailable(ctx);
    const boots = await Promise.all([suite.boot(LOCKDOWN), suite.boot(SIG_ENFORCE)]);
    for (const b of boots) {
      expect(b.results.get("env")?.ok, b.plan).toBe(true);
      expect(b.done, `${b.plan}: runner did not finish`).toBe(true);
    }
  }, TEST_TIMEOUT_MS);

  suite.scenario("lockdown=integrity: unsigned and untrusted-signed modules refused with LockdownDenied (EPERM), nothing left", LOCKDOWN, "refuse-lockdown", (d) => {
    expect(String(obj(d.settings).lockdown)).toBe("none [integrity] confidentiality");
    expect(obj(d.settings).sigEnforce).toBe("N");
    const bare = obj(d.bare);
    expect(bare.rc).toBe(1);
    expect(String(bare.stderr)).toMatch(/Operation not permitted/);
    expect(arr(bare.kmsg).join("\n")).toMatch(/Lockdown: insmod: unsigned module loading is restricted; see man kernel_lockdown\.7/);
    expect(String(obj(d.bareSigned).stderr)).toMatch(/Operation not permitted/);
    const unsigned = run(d.unsigned);
    expectRefused(unsigned, ["LockdownDenied"]);
    expect(unsigned.stderr).toContain("kernel lockdown (integrity) refused to load klp_test_v1: it is unsigned");
    expect(obj(obj(unsigned.json).details).errno).toBe("EPERM");
    const signed = run(d.signed);
    expectRefused(signed, ["LockdownDenied"]);
    expect(signed.stderr).toContain("it is signed, but not by a key this kernel trusts");
    expectNothingLeft(obj(d.after));
    suite.log(`lockdown: bare insmod "${String(bare.stderr)}", kernel log "${arr(bare.kmsg).map(String).find((l) => l.includes("Lockdown")) ?? ""}"; ` +
      `agent ${unsigned.stderr.trim()} (${unsigned.ms} ms)`);
  });

  suite.scenario("module.sig_enforce=1: unsigned and untrusted-signed modules refused with SignatureRejected (EKEYREJECTED), nothing left", SIG_ENFORCE, "refuse-sig-enforce", (d) => {
    expect(obj(d.settings).sigEnforce).toBe("Y");
    expect(String(obj(d.settings).lockdown)).toBe("[none] integrity confidentiality");
    const bare = obj(d.bare);
    expect(bare.rc).toBe(1);
    expect(String(bare.stderr)).toMatch(/Key was rejected by service/);
    expect(arr(bare.kmsg).join("\n")).toMatch(/Loading of unsigned module is rejected/);
    const bareSigned = obj(d.bareSigned);
    expect(String(bareSigned.stderr)).toMatch(/Key was rejected by service/);
    expect(arr(bareSigned.kmsg).join("\n")).toMatch(/Loading of module with unavailable key is rejected/);
    const unsigned = run(d.unsigned);
    expectRefused(unsigned, ["SignatureRejected"]);
    expect(obj(obj(unsigned.json).details).errno).toBe("EKEYREJECTED");
    expectRefused(run(d.signed), ["SignatureRejected"]);
    expectNothingLeft(obj(d.after));
    suite.log(`sig_enforce: bare insmod "${String(bare.stderr)}", kernel log "${arr(bare.kmsg).map(String).find((l) => l.includes("rejected")) ?? ""}"; ` +
      `agent ${unsigned.stderr.trim()} (${unsigned.ms} ms)`);
  });
});
