import { describe, expect, it } from "vitest";
import { parseModule } from "../host/parse-module.ts";
import { buildSimModule, simSignatureOf, type SimModuleOptions } from "./build-module.ts";
import { SimConfigSchema, type SimConfigInput } from "./sim-config.ts";
import {
  advance,
  freshState,
  insmod,
  moduleTaint,
  rmmod,
  SimKernelError,
  simTasks,
  writeAttribute,
  type SimState,
} from "./sim-kernel.ts";

const config = (c: Partial<SimConfigInput> = {}) => SimConfigSchema.parse({ kernelRelease: "6.1.0-56-amd64", transitionMs: 100, ...c });
const parsed = (name: string, o: Partial<SimModuleOptions> = {}) => parseModule(buildSimModule({ name, vermagic: "6.1.0-56-amd64", ...o }));

function errno(fn: () => unknown): string | undefined {
  try {
    fn();
    return undefined;
  } catch (error) {
    if (error instanceof SimKernelError) return error.code;
    throw error;
  }
}

/** State with `p` loaded and its transition finished. */
function loaded(name = "p", o: Partial<SimModuleOptions> = {}, state = freshState("b", 0)): SimState {
  return advance(insmod(state, config(), parsed(name, o), 0), config(), 1_000);
}

describe("insmod", () => {
  it.each([
    { case: "ok", c: {}, o: {}, errno: undefined },
    { case: "bad ELF", c: {}, o: {}, bytes: Buffer.from("junk"), errno: "ENOEXEC" },
    // load_module() checks the signature before it looks at the ELF.
    { case: "bad ELF under sig_enforce", c: { signatureEnforce: true }, o: {}, bytes: Buffer.from("junk"), errno: "EKEYREJECTED" },
    { case: "bad ELF under lockdown", c: { lockdown: "integrity" as const }, o: {}, bytes: Buffer.from("junk"), errno: "EPERM" },
    { case: "unsigned under sig_enforce", c: { signatureEnforce: true }, o: {}, errno: "EKEYREJECTED" },
    { case: "signed under sig_enforce", c: { signatureEnforce: true }, o: { signed: true }, errno: undefined },
    { case: "unsigned under lockdown", c: { lockdown: "integrity" as const }, o: {}, errno: "EPERM" },
    { case: "signed under lockdown", c: { lockdown: "integrity" as const }, o: { signed: true }, errno: undefined },
    // A key the kernel's keyrings do not hold (module_sig_check: ENOKEY) is no better than none.
    { case: "unknown key under sig_enforce", c: { signatureEnforce: true }, o: { signed: true, untrustedKey: true }, errno: "EKEYREJECTED" },
    { case: "unknown key under lockdown", c: { lockdown: "integrity" as const }, o: { signed: true, untrustedKey: true }, errno: "EPERM" },
    { case: "unknown key, nothing enforced", c: {}, o: { signed: true, untrustedKey: true }, errno: undefined },
    { case: "modules disabled", c: { modulesDisabled: true }, o: { signed: true }, errno: "EPERM" },
    { case: "no livepatch support", c: { livepatchSupported: false }, o: {}, errno: "ENOEXEC" },
    { case: "plain module without livepatch support", c: { livepatchSupported: false }, o: { livepatch: false }, errno: undefined },
    { case: "ftrace disabled", c: { ftraceEnabled: false }, o: {}, errno: "EBUSY" },
    { case: "other release (modversions)", c: {}, o: { vermagic: "6.1.0-1-amd64" }, errno: undefined },
  ])("$case → $errno", ({ c, o, bytes, errno: expected }) => {
    const image = bytes ?? buildSimModule({ name: "p", vermagic: "6.1.0-56-amd64", ...o });
    expect(errno(() => insmod(freshState("b", 0), config(c), parseModule(image), 0, simSignatureOf(image)))).toBe(expected);
  });

  it("refuses a duplicate name (EEXIST) and a load during another transition (EBUSY)", () => {
    const moving = insmod(freshState("b", 0), config(), parsed("a"), 0);
    expect(errno(() => insmod(moving, config(), parsed("a"), 0))).toBe("EEXIST");
    expect(errno(() => insmod(moving, config(), parsed("b"), 0))).toBe("EBUSY");
    expect(errno(() => insmod(moving, config(), parsed("plain", { livepatch: false }), 0))).toBeUndefined();
  });

  it.each([
    { o: {}, tainted: 45056, letters: "OEK" },
    { o: { signed: true }, tainted: 36864, letters: "OK" },
    { o: { livepatch: false }, tainted: 12288, letters: "OE" },
    { o: { intree: true, signed: true, livepatch: false }, tainted: 0, letters: "" },
    // E unless the signature verified: a trailer from an unknown key taints like none.
    { o: { signed: true, untrustedKey: true }, tainted: 45056, letters: "OEK" },
  ])("taints $letters ($tainted)", ({ o, tainted, letters }) => {
    const image = buildSimModule({ name: "p", vermagic: "6.1.0-56-amd64", ...o });
    const state = insmod(freshState("b", 0), config(), parseModule(image), 0, simSignatureOf(image));
    expect(state.tainted).toBe(tainted);
    expect(moduleTaint(state.modules[0]!)).toBe(letters);
  });
});

describe("transitions", () => {
  it("completes after transitionMs", () => {
    const s = insmod(freshState("b", 0), config(), parsed("p"), 0);
    expect(advance(s, config(), 99).modules[0]?.patch).toEqual({ enabled: true, transition: { target: true, startedAt: 0, reversed: false } });
    expect(advance(s, config(), 100).modules[0]?.patch).toEqual({ enabled: true, transition: null });
  });

  it("never completes in stall mode, but a reversal does", () => {
    const c = config({ stall: true });
    const s = advance(insmod(freshState("b", 0), c, parsed("p"), 0), c, 1e9);
    expect(s.modules[0]?.patch?.transition).not.toBeNull();
    const reversed = writeAttribute(s, "p", "enabled", "0", 2e9);
    expect(reversed.modules[0]?.patch?.transition).toMatchObject({ target: false, reversed: true });
    expect(advance(reversed, c, 2e9 + 100).modules[0]?.patch).toBeNull();
  });

  it("unpatching removes the livepatch but keeps the module with refcnt 0", () => {
    const s = advance(writeAttribute(loaded(), "p", "enabled", "0", 2_000), config(), 3_000);
    expect(s.modules).toMatchObject([{ name: "p", patch: null }]);
    expect(rmmod(s, config(), "p").modules).toEqual([]);
  });

  it("with freeDelayMs a disabled patch stays (enabled=0) until its asynchronous free", () => {
    const c = config({ freeDelayMs: 50 });
    const off = advance(writeAttribute(advance(insmod(freshState("b", 0), c, parsed("p"), 0), c, 100), "p", "enabled", "0", 200), c, 300);
    expect(off.modules[0]?.patch).toEqual({ enabled: false, transition: null, goneAt: 350 });
    expect(errno(() => writeAttribute(off, "p", "enabled", "1", 300))).toBe("EINVAL");
    expect(errno(() => rmmod(off, c, "p"))).toBe("EWOULDBLOCK");
    expect(advance(off, c, 350).modules[0]?.patch).toBeNull();
  });

  it("atomic replace drops the other patches when the replace patch finishes", () => {
    const s = loaded("v2", { replace: true }, loaded("v1"));
    expect(s.modules.map((m) => [m.name, m.patch !== null])).toEqual([
      ["v1", false],
      ["v2", true],
    ]);
  });

  it("shows stalled tasks only while a stalled forward transition runs", () => {
    const c = config({ stall: true });
    const s = insmod(freshState("b", 0), c, parsed("p"), 0);
    expect(simTasks(s, c).map((t) => [t.tid, t.patchState])).toEqual([
      [1, 1],
      [4242, 0],
      [4243, 0],
    ]);
    expect(simTasks(s, config()).map((t) => t.tid)).toEqual([1]);
    expect(simTasks(freshState("b", 0), c)).toMatchObject([{ tid: 1, patchState: -1 }]);
  });
});

describe("sysfs writes", () => {
  it.each([
    { case: "same value", name: "p", attr: "enabled", value: "1", errno: "EINVAL" },
    { case: "not a boolean", name: "p", attr: "enabled", value: "2", errno: "EINVAL" },
    { case: "unknown patch", name: "q", attr: "enabled", value: "0", errno: "ENOENT" },
    { case: "signal outside a transition", name: "p", attr: "signal", value: "1", errno: "EINVAL" },
    { case: "force outside a transition", name: "p", attr: "force", value: "1", errno: "EINVAL" },
    { case: "read-only attribute", name: "p", attr: "transition", value: "1", errno: "EPERM" },
    { case: "disable", name: "p", attr: "enabled", value: "0", errno: undefined },
  ])("$case → $errno", ({ name, attr, value, errno: expected }) => {
    expect(errno(() => writeAttribute(loaded(), name, attr, value, 5_000))).toBe(expected);
  });

  it("refuses to disable one patch while another is in transition", () => {
    const s = insmod(loaded("a"), config(), parsed("b"), 2_000);
    expect(errno(() => writeAttribute(s, "a", "enabled", "0", 2_000))).toBe("EBUSY");
  });

  it("rmmod refuses an enabled patch and an unknown module", () => {
    expect(errno(() => rmmod(loaded(), config(), "p"))).toBe("EWOULDBLOCK");
    expect(errno(() => rmmod(loaded(), config(), "q"))).toBe("ENOENT");
  });
});
