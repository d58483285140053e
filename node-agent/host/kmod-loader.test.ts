import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createKmodLoader } from "./kmod-loader.ts";
import { LoaderError } from "./ports.ts";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "kmod-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A stand-in for insmod/rmmod: records its argument, prints `stderr`, exits with `code`. */
async function fakeTool(name: string, stderr: string, code: number): Promise<string> {
  const file = path.join(dir, name);
  await writeFile(file, `#!/bin/sh\necho "$1" >> "${dir}/${name}.args"\n[ -n "${stderr}" ] && echo "${stderr}" >&2\nexit ${code}\n`);
  await chmod(file, 0o755);
  return file;
}

describe("kmod loader", () => {
  it("runs insmod with the file and rmmod with the name", async () => {
    const loader = createKmodLoader({ hostRoot: dir, insmod: await fakeTool("insmod", "", 0), rmmod: await fakeTool("rmmod", "", 0) });
    await loader.insmod("/host/var/lib/kpatch/r/p.ko");
    await loader.rmmod("p");
    expect(await readFile(path.join(dir, "insmod.args"), "utf8")).toBe("/host/var/lib/kpatch/r/p.ko\n");
    expect(await readFile(path.join(dir, "rmmod.args"), "utf8")).toBe("p\n");
  });

  it.each([
    { op: "insmod" as const, stderr: "insmod: ERROR: could not insert module p.ko: Key was rejected by service", code: "EKEYREJECTED" },
    { op: "insmod" as const, stderr: "insmod: ERROR: could not insert module p.ko: Device or resource busy", code: "EBUSY" },
    { op: "rmmod" as const, stderr: "rmmod: ERROR: Module p is in use", code: "EWOULDBLOCK" },
  ])("maps $op failure to $code", async ({ op, stderr, code }) => {
    const tool = await fakeTool(op, stderr, 1);
    const loader = createKmodLoader({ hostRoot: dir, insmod: tool, rmmod: tool });
    const error = await (op === "insmod" ? loader.insmod("/p.ko") : loader.rmmod("p")).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LoaderError);
    expect(error).toMatchObject({ code, op, message: stderr });
  });

  it("reports a missing binary as EIO", async () => {
    const loader = createKmodLoader({ hostRoot: dir, insmod: path.join(dir, "no-such-insmod") });
    await expect(loader.insmod("/p.ko")).rejects.toMatchObject({ code: "EIO", op: "insmod" });
  });

  it("writes sysfs attributes under the host root without creating them", async () => {
    await mkdir(path.join(dir, "sys/kernel/livepatch/p"), { recursive: true });
    await writeFile(path.join(dir, "sys/kernel/livepatch/p/enabled"), "1\n");
    const loader = createKmodLoader({ hostRoot: dir });
    await loader.writeSysfs("/sys/kernel/livepatch/p/enabled", "0");
    expect(await readFile(path.join(dir, "sys/kernel/livepatch/p/enabled"), "utf8")).toMatch(/^0/); // no O_TRUNC: sysfs needs none
    await expect(loader.writeSysfs("/sys/kernel/livepatch/q/enabled", "0")).rejects.toMatchObject({ code: "ENOENT", op: "write" });
  });
});
