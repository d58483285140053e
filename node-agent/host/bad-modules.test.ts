/**
 * Malformed module files on a simulated host, through the driver API and through the
 * `kpatch-agent` CLI (the esbuild bundle, spawned). Every one is refused with its reason, and:
 * nothing is loaded (the sim's insmod count stays 0), nothing is written outside /var/lib/kpatch
 * (the rest of the host root and a directory beside it are byte-for-byte unchanged), no module is
 * staged and no temporary file is left in /var/lib/kpatch.
 */
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { lstat, mkdir, mkdtemp, open, readdir, readFile, readlink, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bundle } from "../../scripts/bundle.ts";
import { buildSimModule } from "../sim/build-module.ts";
import { readSimState } from "../sim/sim-files.ts";
import { createTestHost, type TestHost } from "../sim/test-host.ts";
import { createHostDriver, type HostDriver, type InstallOptions } from "./driver.ts";
import { HostError } from "./host-error.ts";
import type { Reason } from "./reasons.ts";

const RELEASE = "6.1.0-56-amd64";
const KPATCH = "/var/lib/kpatch";
const GOOD = buildSimModule({ name: "livepatch_fix", vermagic: RELEASE });
const LIMIT = 4096;
const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

function edited(edit: (b: Buffer) => void, base = GOOD): Buffer {
  const copy = Buffer.from(base);
  edit(copy);
  return copy;
}

/** A host-tree fixture a case plants before the install (symlinks, directories). */
type Plant = (host: { root: string; outside: string }) => Promise<void>;

interface Case {
  case: string;
  bytes: Buffer;
  reason: Reason;
  /** Install options beyond the running release. */
  install?: Partial<InstallOptions>;
  plant?: Plant;
  /** The bytes are refused by themselves: `load <file>` refuses them too. */
  refusedByLoad?: boolean;
  /** CLI arguments after `install` (default: the file). */
  cli?: (file: string) => string[];
}

const truncatedCases: Case[] = [
  { case: "truncated (section table cut)", bytes: GOOD.subarray(0, 700), reason: "Truncated", refusedByLoad: true },
  { case: "truncated inside the ELF header", bytes: GOOD.subarray(0, 40), reason: "Truncated", refusedByLoad: true },
];

const CASES: Case[] = [
  ...truncatedCases,
  { case: "wrong vermagic", bytes: buildSimModule({ name: "livepatch_fix", vermagic: "6.1.0-55-amd64" }), reason: "VermagicMismatch", refusedByLoad: true },
  { case: "not a livepatch", bytes: buildSimModule({ name: "livepatch_fix", vermagic: RELEASE, livepatch: false }), reason: "NotALivepatch", refusedByLoad: true },
  { case: "wrong architecture (aarch64)", bytes: buildSimModule({ name: "livepatch_fix", vermagic: RELEASE, arch: "aarch64" }), reason: "WrongArchitecture", refusedByLoad: true },
  { case: "ELF32", bytes: edited((b) => void (b[4] = 1)), reason: "WrongArchitecture", refusedByLoad: true },
  { case: "zero bytes", bytes: Buffer.alloc(0), reason: "NotAnELFModule", refusedByLoad: true },
  { case: "non-ELF text", bytes: Buffer.from("#!/bin/sh\nrm -rf --no-preserve-root /\n"), reason: "NotAnELFModule", refusedByLoad: true },
  { case: "ELF but ET_EXEC", bytes: edited((b) => void b.writeUInt16LE(2, 16)), reason: "NotAnELFModule", refusedByLoad: true },
  { case: "ELF but ET_DYN", bytes: edited((b) => void b.writeUInt16LE(3, 16)), reason: "NotAnELFModule", refusedByLoad: true },
  { case: "section table offset past the end", bytes: edited((b) => void b.writeBigUInt64LE(1n << 40n, 40)), reason: "Truncated", refusedByLoad: true },
  { case: `huge (beyond maxModuleBytes ${LIMIT})`, bytes: Buffer.concat([GOOD, Buffer.alloc(LIMIT + 1 - GOOD.length)]), reason: "ModuleTooLarge", refusedByLoad: true },
  { case: "pinned digest differs", bytes: GOOD, install: { sha256: sha(Buffer.from("other")) }, reason: "ChecksumMismatch", cli: (f) => ["--sha256", sha(Buffer.from("other")), f] },
  { case: "name with a dash that is another module", bytes: GOOD, install: { name: "livepatch-fix2" }, reason: "InvalidModuleName" },
  { case: "path traversal name ../livepatch_fix", bytes: GOOD, install: { name: "../livepatch_fix" }, reason: "InvalidModuleName" },
  { case: "name with a slash x/livepatch_fix", bytes: GOOD, install: { name: "x/livepatch_fix" }, reason: "InvalidModuleName" },
  {
    case: "path traversal release ../../../escape",
    bytes: buildSimModule({ name: "livepatch_fix", vermagic: "../../../escape" }),
    install: { kernelRelease: "../../../escape" },
    reason: "UnsafePath",
    cli: (f) => ["-k", "../../../escape", f],
  },
  {
    case: "release directory is a planted symlink to outside",
    bytes: GOOD,
    reason: "UnsafePath",
    plant: ({ root, outside }) => symlink(outside, path.join(root, KPATCH, RELEASE)),
  },
  {
    case: "/var/lib/kpatch is a planted symlink to outside",
    bytes: GOOD,
    reason: "UnsafePath",
    plant: async ({ root, outside }) => {
      await rm(path.join(root, KPATCH), { recursive: true });
      await symlink(outside, path.join(root, KPATCH));
    },
  },
  {
    case: "the .ko is a planted symlink to a file outside",
    bytes: GOOD,
    reason: "UnsafePath",
    plant: async ({ root, outside }) => {
      await mkdir(path.join(root, KPATCH, RELEASE), { recursive: true });
      await symlink(path.join(outside, "victim"), path.join(root, KPATCH, RELEASE, "livepatch_fix.ko"));
    },
  },
  {
    case: "a directory where the .ko should be",
    bytes: GOOD,
    reason: "UnsafePath",
    plant: async ({ root }) => void (await mkdir(path.join(root, KPATCH, RELEASE, "livepatch_fix.ko"), { recursive: true })),
  },
];

// ---------------------------------------------------------------------------------------------
// What must not change

type Snapshot = Map<string, string>;

/** Every path under `dir` (lstat: links are not followed) with its kind and content digest. */
async function snapshot(dir: string, skip: (rel: string) => boolean = () => false): Promise<Snapshot> {
  const out: Snapshot = new Map();
  const walk = async (rel: string): Promise<void> => {
    if (skip(rel)) return;
    const full = path.join(dir, rel);
    const st = await lstat(full);
    if (st.isSymbolicLink()) out.set(rel, `link ${await readlink(full)}`);
    else if (st.isFile()) out.set(rel, `file ${st.mode.toString(8)} ${sha(await readFile(full))}`);
    else if (st.isDirectory()) {
      out.set(rel, `dir ${st.mode.toString(8)}`);
      for (const name of await readdir(full)) await walk(path.join(rel, name));
    } else out.set(rel, "other");
  };
  await walk("/");
  return out;
}

/** Files (not directories) under /var/lib/kpatch, following nothing. */
async function kpatchFiles(root: string): Promise<string[]> {
  const snap = await snapshot(path.join(root, KPATCH));
  return [...snap].filter(([, kind]) => !kind.startsWith("dir")).map(([rel]) => rel);
}

let work: string;
let bundled: string;
beforeAll(async () => {
  work = await mkdtemp(path.join(tmpdir(), "kpatch-bad-modules-"));
  bundled = path.join(work, "kpatch-agent.mjs");
  await bundle("node-agent/cli.ts", bundled);
}, 60_000);
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

/** A fresh simulated host, a directory beside it, and a driver with a small module size limit. */
interface Fixture {
  host: TestHost;
  outside: string;
  driver: HostDriver;
  /** Plants the case's fixture and records what must not change. */
  plant(c: Pick<Case, "plant">): Promise<void>;
  /** Nothing loaded, nothing written outside /var/lib/kpatch, nothing staged, no temp file. */
  expectUntouched(): Promise<void>;
  cleanup(): Promise<void>;
}

async function fixture(): Promise<Fixture> {
  const host = await createTestHost({ transitionMs: 0 });
  const outside = await mkdtemp(path.join(tmpdir(), "kpatch-outside-"));
  await writeFile(path.join(outside, "victim"), "outside the host root\n");
  const driver = createHostDriver({ hostRoot: host.root, loader: host.sim, clock: host.clock, log: host.log, limits: { maxModuleBytes: LIMIT } });
  const record = async () => ({
    host: await snapshot(host.root, (rel) => rel === KPATCH),
    outside: await snapshot(outside),
    kpatch: await kpatchFiles(host.root).catch(() => []),
  });
  let before: Awaited<ReturnType<typeof record>> | undefined;
  return {
    host,
    outside,
    driver,
    async plant(c) {
      await c.plant?.({ root: host.root, outside });
      before = await record();
    },
    async expectUntouched() {
      expect((await readSimState(host.root)).insmods).toEqual({});
      expect(await record()).toEqual(before);
    },
    async cleanup() {
      await host.cleanup();
      await rm(outside, { recursive: true, force: true });
    },
  };
}

/** Runs `body` on a fresh fixture and removes it afterwards. */
async function withFixture(body: (f: Fixture) => Promise<void>): Promise<void> {
  const f = await fixture();
  try {
    await body(f);
  } finally {
    await f.cleanup();
  }
}

async function refusal(promise: Promise<unknown>): Promise<HostError> {
  const error = await promise.then(
    () => new Error("accepted"),
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(HostError);
  return error as HostError;
}

describe("malformed modules through the driver", () => {
  it.each(CASES)("install refuses $case with $reason", (c) =>
    withFixture(async (f) => {
      await f.plant(c);
      const error = await refusal(f.driver.install(c.bytes, { kernelRelease: RELEASE, ...c.install }));
      expect(error.reason).toBe(c.reason);
      await f.expectUntouched();
    }),
  );

  it.each(CASES.filter((c) => c.refusedByLoad))("load <file> refuses $case with $reason", (c) =>
    withFixture(async (f) => {
      await f.plant(c);
      const error = await refusal(f.driver.load({ file: path.join(work, "given.ko"), bytes: c.bytes }));
      expect(error.reason).toBe(c.reason);
      await f.expectUntouched();
    }),
  );

  it("uninstall and load by name refuse path traversal names", () =>
    withFixture(async (f) => {
      await f.plant({});
      for (const name of ["../x", "a/b", "..", ".hidden", ""]) {
        expect((await refusal(f.driver.uninstall(name, RELEASE))).reason).toBe("InvalidModuleName");
        expect((await refusal(f.driver.load(name))).reason).toBe("InvalidModuleName");
      }
      expect((await refusal(f.driver.uninstall("livepatch_fix", "../../escape"))).reason).toBe("UnsafePath");
      await f.expectUntouched();
    }));

  it("the good module is accepted by the same driver (the cases above differ only where they say)", () =>
    withFixture(async (f) => {
      await f.driver.install(GOOD, { kernelRelease: RELEASE, sha256: sha(GOOD) });
      await f.driver.load("livepatch_fix");
      expect((await readSimState(f.host.root)).insmods).toEqual({ livepatch_fix: 1 });
      expect(await kpatchFiles(f.host.root)).toEqual([`/${RELEASE}/livepatch_fix.ko`]);
    }));

  // Every by-name operation (unload, removeLeftover, uninstall: driver-context.ts
  // checkedModuleName) normalises a name to underscores first, so a module whose own name
  // (.gnu.linkonce.this_module) has a dash, once loaded, could never be unloaded by name. kbuild
  // never produces such a name (KBUILD_MODNAME turns '-' into '_'), so verify refuses it
  // (check-module.ts).
  it("refuses a module whose own name has a dash (by-name operations could never unload it)", () =>
    withFixture(async (f) => {
      const dashed = buildSimModule({ name: "livepatch-fix", vermagic: RELEASE });
      await f.plant({});
      const error = await refusal(f.driver.install(dashed, { kernelRelease: RELEASE }));
      expect(error.reason).toBe("InvalidModuleName");
      await f.expectUntouched();
    }),
  );
});

// ---------------------------------------------------------------------------------------------
// The same through the CLI

function cli(root: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bundled, "--host-root", root, ...args], { cwd: work, env: { PATH: process.env.PATH ?? "" } });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

/** The CLI has no size flag: its limit is the driver's default (64 MiB); a sparse file goes past it. */
async function hugeFile(file: string): Promise<void> {
  const handle = await open(file, "w");
  await handle.write(GOOD);
  await handle.truncate(64 * 1024 * 1024 + 1);
  await handle.close();
}

/** A representative dozen (each spawn costs a Node start); the driver cases above cover every one. */
const CLI_INSTALL = [
  "truncated (section table cut)",
  "wrong vermagic",
  "not a livepatch",
  "wrong architecture (aarch64)",
  "zero bytes",
  "non-ELF text",
  "ELF but ET_EXEC",
  `huge (beyond maxModuleBytes ${LIMIT})`,
  "pinned digest differs",
  "path traversal release ../../../escape",
  "release directory is a planted symlink to outside",
  "a directory where the .ko should be",
];
const CLI_LOAD = ["wrong vermagic", "ELF but ET_DYN", "zero bytes"];
const byName = (names: readonly string[]) => CASES.filter((c) => names.includes(c.case));

describe.concurrent("malformed modules through the kpatch-agent CLI", () => {
  it.each(byName(CLI_INSTALL))("install $case: exit 1, $reason on stderr", (c) =>
    withFixture(async (f) => {
      const file = path.join(f.outside, "bad.ko");
      if (c.reason === "ModuleTooLarge") await hugeFile(file);
      else await writeFile(file, c.bytes);
      await f.plant(c);
      const r = await cli(f.host.root, ["install", ...(c.cli ? c.cli(file) : [file])]);
      expect({ code: r.code, stderr: r.stderr }).toMatchObject({ code: 1, stderr: expect.stringMatching(new RegExp(`^kpatch-agent: ${c.reason}: .+\\n$`)) });
      await f.expectUntouched();
    }),
  );

  it.each(byName(CLI_LOAD))("load $case: exit 1, --json reason $reason", (c) =>
    withFixture(async (f) => {
      const file = path.join(f.outside, "bad.ko");
      await writeFile(file, c.bytes);
      await f.plant(c);
      const r = await cli(f.host.root, ["--json", "load", file]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(new RegExp(`^kpatch-agent: ${c.reason}: `));
      expect(JSON.parse(r.stdout)).toMatchObject({ ok: false, reason: c.reason });
      await f.expectUntouched();
    }),
  );

  it("uninstall ../x: exit 1, InvalidModuleName", () =>
    withFixture(async (f) => {
      await f.plant({});
      const r = await cli(f.host.root, ["uninstall", "../x"]);
      expect({ code: r.code, stderr: r.stderr }).toMatchObject({ code: 1, stderr: expect.stringMatching(/^kpatch-agent: InvalidModuleName: /) });
      await f.expectUntouched();
    }));
});
