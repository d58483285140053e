import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, readdir, readFile, stat, symlink, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { buildSimModule } from "../sim/build-module.ts";
import { createTestHost, type TestHost } from "../sim/test-host.ts";
import { createHostDriver } from "./driver.ts";
import { hostError, HostError } from "./host-error.ts";
import { createNodeHostFs } from "./node-host-fs.ts";
import type { HostFs } from "./ports.ts";

const RELEASE = "6.1.0-56-amd64";
const KDIR = `/var/lib/kpatch/${RELEASE}`;
let host: TestHost;

beforeEach(async () => {
  host = await createTestHost();
});
afterEach(async () => {
  await host.cleanup();
});

const at = (p: string) => path.join(host.root, p);
const module = (name = "livepatch_fix", extra: Array<[string, string]> = []) =>
  buildSimModule({ name, vermagic: RELEASE, extraModinfo: extra });
const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

async function failure(promise: Promise<unknown>): Promise<HostError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(HostError);
  return error as HostError;
}

describe("verify", () => {
  it("returns what it checked", () => {
    const bytes = buildSimModule({ name: "livepatch_fix", vermagic: RELEASE, signed: true });
    expect(host.driver.verify(bytes, { sha256: sha(bytes), kernelRelease: RELEASE, moduleName: "livepatch_fix" })).toMatchObject({
      name: "livepatch_fix",
      kernelRelease: RELEASE,
      sha256: sha(bytes),
      signed: true,
      signature: { idType: "PKCS#7", hashAlgorithm: "sha256" },
      simReplace: false,
    });
  });

  it.each([
    { case: "digest", expect: { sha256: "f".repeat(64) }, bytes: () => module(), reason: "ChecksumMismatch" },
    { case: "release", expect: { kernelRelease: "6.1.0-1-amd64" }, bytes: () => module(), reason: "VermagicMismatch" },
    { case: "name", expect: { moduleName: "other" }, bytes: () => module(), reason: "InvalidModuleName" },
    { case: "garbage", expect: {}, bytes: () => Buffer.from("garbage"), reason: "NotAnELFModule" },
    { case: "truncated", expect: {}, bytes: () => module().subarray(0, 500), reason: "Truncated" },
  ])("refuses a wrong $case with $reason", ({ expect: e, bytes, reason }) => {
    const b = bytes();
    expect(() => host.driver.verify(b, { kernelRelease: RELEASE, ...e })).toThrow(expect.objectContaining({ reason }));
  });

  it("refuses modules over the size limit", () => {
    const small = createHostDriver({ hostRoot: host.root, loader: host.sim, log: host.log, limits: { maxModuleBytes: 100 } });
    expect(() => small.verify(module(), { kernelRelease: RELEASE })).toThrow(expect.objectContaining({ reason: "ModuleTooLarge" }));
  });
});

describe("install", () => {
  it("stages the module atomically with mode 0644", async () => {
    const bytes = module();
    const result = await host.driver.install(bytes, { kernelRelease: RELEASE, name: "livepatch_fix", sha256: sha(bytes) });
    expect(result).toMatchObject({ name: "livepatch_fix", file: `${KDIR}/livepatch_fix.ko`, sha256: sha(bytes), alreadyInstalled: false });
    expect(await readFile(at(result.file))).toEqual(bytes);
    expect((await stat(at(result.file))).mode & 0o777).toBe(0o644);
    expect(await readdir(at(KDIR))).toEqual(["livepatch_fix.ko"]);
  });

  it("creates /var/lib/kpatch when it is missing", async () => {
    const { rm } = await import("node:fs/promises");
    await rm(at("/var/lib/kpatch"), { recursive: true });
    await host.driver.install(module(), { kernelRelease: RELEASE });
    expect(existsSync(at(`${KDIR}/livepatch_fix.ko`))).toBe(true);
  });

  it("is idempotent for the same bytes and refuses a different build of the same name", async () => {
    await host.driver.install(module(), { kernelRelease: RELEASE });
    expect(await host.driver.install(module(), { kernelRelease: RELEASE })).toMatchObject({ alreadyInstalled: true });
    const other = module("livepatch_fix", [["build", "2"]]);
    expect((await failure(host.driver.install(other, { kernelRelease: RELEASE }))).reason).toBe("AlreadyInstalled");
    const replaced = await host.driver.install(other, { kernelRelease: RELEASE, overwrite: true });
    expect(replaced.alreadyInstalled).toBe(false);
    expect(await readFile(at(replaced.file))).toEqual(other);
  });

  it("refuses a second file for a module name staged under another file name", async () => {
    await mkdir(at(KDIR), { recursive: true });
    await writeFile(at(`${KDIR}/livepatch-fix.ko`), module("livepatch_fix", [["build", "kpatch"]]));
    expect((await failure(host.driver.install(module(), { kernelRelease: RELEASE }))).reason).toBe("AlreadyInstalled");
  });

  it.each([
    { case: "a symlinked release directory", plant: async () => symlink("/tmp", at(KDIR)) },
    {
      case: "a symlinked /var/lib/kpatch",
      plant: async () => {
        const { rm } = await import("node:fs/promises");
        await rm(at("/var/lib/kpatch"), { recursive: true });
        await symlink("/tmp", at("/var/lib/kpatch"));
      },
    },
    {
      case: "a symlink in place of the module file",
      plant: async () => {
        await mkdir(at(KDIR), { recursive: true });
        await symlink("/etc/passwd", at(`${KDIR}/livepatch_fix.ko`));
      },
    },
    {
      case: "a directory in place of the module file",
      plant: async () => mkdir(at(`${KDIR}/livepatch_fix.ko`), { recursive: true }),
    },
  ])("refuses $case with UnsafePath", async ({ plant }) => {
    await plant();
    expect((await failure(host.driver.install(module(), { kernelRelease: RELEASE }))).reason).toBe("UnsafePath");
  });

  it.each([
    { kernelRelease: "../../etc", reason: "VermagicMismatch" },
    { kernelRelease: "..", reason: "VermagicMismatch" },
  ])("refuses the release $kernelRelease", async ({ kernelRelease, reason }) => {
    expect((await failure(host.driver.install(module(), { kernelRelease }))).reason).toBe(reason);
  });

  it("refuses a traversing release even when the vermagic says so", async () => {
    const evil = buildSimModule({ name: "livepatch_fix", vermagic: "../../etc" });
    expect((await failure(host.driver.install(evil, { kernelRelease: "../../etc" }))).reason).toBe("UnsafePath");
    expect(existsSync(at("/etc/livepatch_fix.ko"))).toBe(false);
  });

  it.each(["../evil", "a/b", ".hidden", "x".repeat(56)])("refuses the file name %s", async (name) => {
    const bytes = buildSimModule({ name: "livepatch_fix", vermagic: RELEASE });
    const error = await failure(host.driver.install(bytes, { kernelRelease: RELEASE, name }));
    expect(error.reason).toBe("InvalidModuleName");
  });

  it.each(["write", "sync", "rename", "syncDir"] as const)("leaves no temporary file when %s fails", async (step) => {
    const real = createNodeHostFs(host.root);
    const boom = () => Promise.reject(hostError("HostIOError", { path: "x", detail: `injected ${step} failure` }));
    const fs: HostFs = {
      ...real,
      createExclusive: async (p, mode) => {
        const file = await real.createExclusive(p, mode);
        return { ...file, write: step === "write" ? boom : file.write, sync: step === "sync" ? boom : file.sync };
      },
      rename: step === "rename" ? boom : real.rename,
      syncDir: step === "syncDir" ? boom : real.syncDir,
    };
    const driver = createHostDriver({ hostRoot: host.root, loader: host.sim, log: host.log, fs });
    expect((await failure(driver.install(module(), { kernelRelease: RELEASE }))).reason).toBe("HostIOError");
    const left = await readdir(at(KDIR));
    expect(left.filter((f) => f.startsWith("."))).toEqual([]);
    expect(left).toEqual(step === "syncDir" ? ["livepatch_fix.ko"] : []);
  });
});

describe("uninstall", () => {
  it("removes the file and prunes the empty release directory, not /var/lib/kpatch", async () => {
    await host.driver.install(module(), { kernelRelease: RELEASE });
    expect(await host.driver.uninstall("livepatch_fix", RELEASE)).toEqual({
      name: "livepatch_fix",
      kernelRelease: RELEASE,
      removed: `${KDIR}/livepatch_fix.ko`,
    });
    expect(existsSync(at(KDIR))).toBe(false);
    expect(existsSync(at("/var/lib/kpatch"))).toBe(true);
  });

  it("keeps a release directory that still has modules, and is idempotent", async () => {
    await host.driver.install(module("fix_a"), { kernelRelease: RELEASE });
    await host.driver.install(module("fix_b"), { kernelRelease: RELEASE });
    await host.driver.uninstall("fix-a", RELEASE);
    expect(await readdir(at(KDIR))).toEqual(["fix_b.ko"]);
    expect((await host.driver.uninstall("fix_a", RELEASE)).removed).toBeUndefined();
    expect((await host.driver.uninstall("fix_a", "6.1.0-99-amd64")).removed).toBeUndefined();
  });

  it("refuses to remove through a symlinked release directory", async () => {
    await mkdir(at("/elsewhere"), { recursive: true });
    await writeFile(at("/elsewhere/livepatch_fix.ko"), module());
    await symlink(at("/elsewhere"), at(KDIR));
    expect((await failure(host.driver.uninstall("livepatch_fix", RELEASE))).reason).toBe("UnsafePath");
    expect(existsSync(at("/elsewhere/livepatch_fix.ko"))).toBe(true);
  });

  it("does not unload a loaded module", async () => {
    await host.driver.install(module(), { kernelRelease: RELEASE });
    await host.driver.load("livepatch_fix");
    await host.driver.uninstall("livepatch_fix", RELEASE);
    const state = await host.driver.inspect();
    expect(state.livepatches.map((p) => p.name)).toEqual(["livepatch_fix"]);
    expect(state.installed).toEqual([]);
  });
});

describe("preflight", () => {
  it("reads the simulated host", async () => {
    expect(await host.driver.preflight()).toMatchObject({
      kernelRelease: RELEASE,
      bootId: expect.stringMatching(/^[0-9a-f-]{36}$/),
      livepatchSupported: true,
      modulesDisabled: false,
      sigEnforce: false,
      lockdown: "none",
      ftraceEnabled: true,
      blockers: [],
    });
  });

  it("fails with HostIOError on a root that is not a host", async () => {
    const driver = createHostDriver({ hostRoot: at("/nowhere"), loader: host.sim, log: host.log });
    expect((await failure(driver.preflight())).reason).toBe("HostIOError");
  });
});

describe("sweepTemporaries", () => {
  it("removes what an interrupted staging left, keeps staged modules and other files, prunes an emptied directory", async () => {
    const fix = module();
    await host.driver.install(fix, { kernelRelease: RELEASE });
    const leftover = `.livepatch_fix.ko.tmp-4242-0badc0de`;
    await writeFile(at(`${KDIR}/${leftover}`), fix.subarray(0, 100));
    await writeFile(at(`${KDIR}/notes.txt`), "an admin's file");
    // A release directory holding nothing but a temporary file.
    await mkdir(at("/var/lib/kpatch/6.1.0-57-amd64"), { recursive: true });
    await writeFile(at("/var/lib/kpatch/6.1.0-57-amd64/.other.ko.tmp-7-deadbeef"), "x");

    const removed = await host.driver.sweepTemporaries();

    expect(removed.sort()).toEqual([`${KDIR}/${leftover}`, "/var/lib/kpatch/6.1.0-57-amd64/.other.ko.tmp-7-deadbeef"]);
    expect((await readdir(at(KDIR))).sort()).toEqual(["livepatch_fix.ko", "notes.txt"]);
    expect(existsSync(at("/var/lib/kpatch/6.1.0-57-amd64"))).toBe(false);
    expect(await host.driver.sweepTemporaries()).toEqual([]);
  });

  it("leaves names that only look similar, and never follows a symlinked release directory", async () => {
    await mkdir(at(KDIR), { recursive: true });
    for (const name of [".fix.ko.tmp-12-xyz", "fix.ko.tmp-12-deadbeef", ".fix.ko"]) await writeFile(at(`${KDIR}/${name}`), "x");
    const elsewhere = at("/elsewhere");
    await mkdir(elsewhere);
    await writeFile(path.join(elsewhere, ".a.ko.tmp-1-deadbeef"), "x");
    await symlink(elsewhere, at("/var/lib/kpatch/6.1.0-99-amd64"));
    expect(await host.driver.sweepTemporaries()).toEqual([]);
    expect(existsSync(path.join(elsewhere, ".a.ko.tmp-1-deadbeef"))).toBe(true);
  });
});
