import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createLoader } from "../create-loader.ts";
import { LoaderError } from "../host/ports.ts";
import { buildSimModule } from "./build-module.ts";
import { layoutSimHost, rebootSimHost } from "./layout.ts";
import { readSimConfig } from "./sim-files.ts";
import { createSimLoader } from "./sim-loader.ts";
import { createVirtualClock } from "./virtual-clock.ts";

let root: string;
beforeEach(async () => {
  root = await mkdtemp(path.join(tmpdir(), "kpatch-sim-"));
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

const read = (p: string) => readFile(path.join(root, p), "utf8").then((s) => s.trim());

describe("layoutSimHost", () => {
  it("lays out the fake kernel files", async () => {
    await layoutSimHost(root, { kernelRelease: "6.1.0-56-amd64", bootId: "boot-1", signatureEnforce: true, lockdown: "integrity" });
    expect(await read("/proc/sys/kernel/osrelease")).toBe("6.1.0-56-amd64");
    expect(await read("/proc/sys/kernel/random/boot_id")).toBe("boot-1");
    expect(await read("/proc/sys/kernel/tainted")).toBe("0");
    expect(await read("/proc/sys/kernel/modules_disabled")).toBe("0");
    expect(await read("/proc/sys/kernel/ftrace_enabled")).toBe("1");
    expect(await read("/sys/module/module/parameters/sig_enforce")).toBe("Y");
    expect(await read("/sys/kernel/security/lockdown")).toBe("none [integrity] confidentiality");
    expect(await readSimConfig(root)).toMatchObject({ kernelRelease: "6.1.0-56-amd64", transitionMs: 500, stall: false });
  });

  it("refuses the real root", async () => {
    await expect(layoutSimHost("/", { kernelRelease: "x" })).rejects.toThrow(/refusing/);
  });
});

describe("SimLoader", () => {
  it("keeps state across loader instances (processes) and evaluates transitions lazily", async () => {
    await layoutSimHost(root, { kernelRelease: "6.1.0-56-amd64", transitionMs: 1_000 });
    const file = path.join(root, "p.ko");
    await writeFile(file, buildSimModule({ name: "p", vermagic: "6.1.0-56-amd64" }));
    const clock = createVirtualClock();
    await createSimLoader({ hostRoot: root, clock }).insmod(file);
    expect(await read("/sys/kernel/livepatch/p/transition")).toBe("1");
    clock.advance(1_000);
    await createSimLoader({ hostRoot: root, clock }).refresh();
    expect(await read("/sys/kernel/livepatch/p/transition")).toBe("0");
    expect(await read("/sys/module/p/refcnt")).toBe("1");
    expect(await read("/proc/sys/kernel/tainted")).toBe("45056");
  });

  it("serialises concurrent operations with its lock", async () => {
    await layoutSimHost(root, { kernelRelease: "6.1.0-56-amd64", transitionMs: 0 });
    const names = ["a", "b", "c", "d", "e", "f"];
    for (const n of names) await writeFile(path.join(root, `${n}.ko`), buildSimModule({ name: n, vermagic: "x", livepatch: false }));
    const loaders = names.map(() => createSimLoader({ hostRoot: root }));
    await Promise.all(names.map((n, i) => loaders[i]!.insmod(path.join(root, `${n}.ko`))));
    expect((await loaders[0]!.state()).modules.map((m) => m.name).sort()).toEqual(names);
  });

  it("reports kernel errors as LoaderError with kmod-like text", async () => {
    await layoutSimHost(root, { kernelRelease: "6.1.0-56-amd64", signatureEnforce: true });
    const file = path.join(root, "p.ko");
    await writeFile(file, buildSimModule({ name: "p", vermagic: "6.1.0-56-amd64" }));
    const error = await createSimLoader({ hostRoot: root }).insmod(file).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LoaderError);
    expect(error).toMatchObject({ code: "EKEYREJECTED", op: "insmod", message: expect.stringContaining("Key was rejected by service") });
    const missing = await createSimLoader({ hostRoot: root }).insmod(path.join(root, "nope.ko")).catch((e: unknown) => e);
    expect(missing).toMatchObject({ code: "EIO" });
    const write = await createSimLoader({ hostRoot: root }).writeSysfs("/proc/sys/kernel/tainted", "0").catch((e: unknown) => e);
    expect(write).toMatchObject({ code: "EPERM", op: "write" });
  });

  it("reboot clears the kernel state and keeps /var/lib/kpatch", async () => {
    await layoutSimHost(root, { kernelRelease: "6.1.0-56-amd64", transitionMs: 0, bootId: "one" });
    const staged = path.join(root, "var/lib/kpatch/6.1.0-56-amd64/p.ko");
    await import("node:fs/promises").then((fs) => fs.mkdir(path.dirname(staged), { recursive: true }));
    await writeFile(staged, buildSimModule({ name: "p", vermagic: "6.1.0-56-amd64" }));
    await createSimLoader({ hostRoot: root }).insmod(staged);
    const state = await rebootSimHost(root, { kernelRelease: "6.1.0-57-amd64" });
    expect(state.bootId).not.toBe("one");
    expect(state.modules).toEqual([]);
    expect(await read("/proc/sys/kernel/osrelease")).toBe("6.1.0-57-amd64");
    expect(await read("/proc/sys/kernel/tainted")).toBe("0");
    expect(await read("/proc/sys/kernel/random/boot_id")).toBe(state.bootId);
    await expect(read("/sys/module/p/refcnt")).rejects.toThrow();
    await expect(read("/var/lib/kpatch/6.1.0-56-amd64/p.ko")).resolves.toBeDefined();
  });
});

describe("createLoader", () => {
  it.each([
    { sim: true, kind: "auto" as const, expected: "sim" },
    { sim: false, kind: "auto" as const, expected: "kmod" },
    { sim: false, kind: "sim" as const, expected: "sim" },
    { sim: true, kind: "kmod" as const, expected: "kmod" },
  ])("$kind on a sim=$sim root → $expected", async ({ sim, kind, expected }) => {
    if (sim) await layoutSimHost(root, { kernelRelease: "x" });
    expect(createLoader(root, kind).kind).toBe(expected);
  });
});
