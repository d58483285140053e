import { describe, expect, it } from "vitest";
import { buildSimModule } from "../sim/build-module.ts";
import { parseModinfo, modinfoValue, modinfoValues, modinfoFlag } from "./modinfo.ts";
import { parseModule, THIS_MODULE_NAME_OFFSET } from "./parse-module.ts";
import { splitSignature, appendSignature } from "./module-signature.ts";

const RELEASE = "6.1.0-56-amd64";
const good = buildSimModule({ name: "livepatch_fix", vermagic: RELEASE });

function mutate(bytes: Buffer, edit: (b: Buffer) => void): Buffer {
  const copy = Buffer.from(bytes);
  edit(copy);
  return copy;
}

/** Overwrites the module name inside .gnu.linkonce.this_module (found by its position in the file). */
function clearThisModuleName(bytes: Buffer): Buffer {
  return mutate(bytes, (b) => {
    const at = b.indexOf(Buffer.from("livepatch_fix\0", "latin1"), 0);
    // first hit is in .modinfo ("name=livepatch_fix"): skip to the one at a this_module offset
    const second = b.indexOf(Buffer.from("livepatch_fix\0", "latin1"), at + 1);
    b.fill(0, second, second + 13);
  });
}

describe("parseModule", () => {
  it("reads a sim-built module", () => {
    const parsed = parseModule(good);
    expect(parsed).toMatchObject({
      ok: true,
      module: {
        name: "livepatch_fix",
        nameSource: "this_module",
        kernelRelease: RELEASE,
        vermagic: `${RELEASE} SMP preempt mod_unload modversions `,
        livepatch: true,
        license: "GPL",
        intree: false,
        retpoline: true,
        signed: false,
        depends: [],
        size: good.length,
      },
    });
  });

  it("falls back to modinfo name, then the file name", () => {
    const noThisName = clearThisModuleName(good);
    expect(parseModule(noThisName)).toMatchObject({ ok: true, module: { name: "livepatch_fix", nameSource: "modinfo" } });
    const noNames = mutate(noThisName, (b) => {
      const at = b.indexOf("name=livepatch_fix");
      b.write("nxme", at, "latin1");
    });
    expect(parseModule(noNames, "/x/livepatch-other.ko")).toMatchObject({
      ok: true,
      module: { name: "livepatch_other", nameSource: "file" },
    });
    expect(parseModule(noNames)).toMatchObject({ ok: false, reason: "NotAnELFModule" });
  });

  it("detects an appended signature", () => {
    const signed = buildSimModule({ name: "p", vermagic: RELEASE, signed: true });
    expect(parseModule(signed)).toMatchObject({
      ok: true,
      module: { signed: true, signature: { idType: "PKCS#7", hashAlgorithm: "sha256" } },
    });
  });

  it.each([
    { case: "empty file", bytes: Buffer.alloc(0), reason: "NotAnELFModule" },
    { case: "text file", bytes: Buffer.from("hello world, not a module"), reason: "NotAnELFModule" },
    { case: "cut inside the header", bytes: good.subarray(0, 40), reason: "Truncated" },
    { case: "cut before the section table", bytes: good.subarray(0, good.length - 100), reason: "Truncated" },
    { case: "cut in half", bytes: good.subarray(0, Math.floor(good.length / 2)), reason: "Truncated" },
    { case: "ELF32", bytes: mutate(good, (b) => (b[4] = 1)), reason: "WrongArchitecture" },
    { case: "big-endian", bytes: mutate(good, (b) => (b[5] = 2)), reason: "WrongArchitecture" },
    { case: "aarch64", bytes: buildSimModule({ name: "p", vermagic: RELEASE, arch: "aarch64" }), reason: "WrongArchitecture" },
    { case: "executable", bytes: mutate(good, (b) => b.writeUInt16LE(2, 16)), reason: "NotAnELFModule" },
    { case: "shared object", bytes: mutate(good, (b) => b.writeUInt16LE(3, 16)), reason: "NotAnELFModule" },
    { case: "no sections", bytes: mutate(good, (b) => b.writeUInt16LE(0, 60)), reason: "NotAnELFModule" },
    { case: "bad shstrndx", bytes: mutate(good, (b) => b.writeUInt16LE(99, 62)), reason: "Truncated" },
    {
      case: "no .modinfo",
      bytes: mutate(good, (b) => b.write(".nodinfo", b.lastIndexOf(".modinfo"), "latin1")),
      reason: "NotAnELFModule",
    },
    {
      case: "no this_module",
      bytes: mutate(good, (b) => b.write(".gnu.linkonce.that_module", b.lastIndexOf(".gnu.linkonce.this_module"), "latin1")),
      reason: "NotAnELFModule",
    },
    {
      case: "signature longer than the file",
      bytes: mutate(buildSimModule({ name: "p", vermagic: RELEASE, signed: true }), (b) => b.writeUInt32BE(0xffffff, b.length - 28 - 4)),
      reason: "Truncated",
    },
  ])("$case → $reason", ({ bytes, reason }) => {
    expect(parseModule(bytes)).toMatchObject({ ok: false, reason });
  });

  it("reports the architecture of a foreign module", () => {
    const parsed = parseModule(buildSimModule({ name: "p", vermagic: RELEASE, arch: "aarch64" }));
    expect(parsed).toMatchObject({ ok: false, arch: "AArch64" });
  });

  it("keeps the name offset of 6.1 struct module", () => {
    expect(THIS_MODULE_NAME_OFFSET).toBe(24);
  });
});

describe("parseModinfo", () => {
  const bytes = Buffer.from("alias=a\0alias=b\0\0\0license=GPL\0livepatch=Y\0junk\0=novalue\0vermagic=6.1 SMP \0", "latin1");
  const entries = parseModinfo(bytes);

  it("keeps key=value strings in order, skipping padding and junk", () => {
    expect(entries).toEqual([
      ["alias", "a"],
      ["alias", "b"],
      ["license", "GPL"],
      ["livepatch", "Y"],
      ["vermagic", "6.1 SMP "],
    ]);
  });

  it.each([
    { key: "alias", value: "a" },
    { key: "license", value: "GPL" },
    { key: "missing", value: undefined },
  ])("first value of $key is $value", ({ key, value }) => {
    expect(modinfoValue(entries, key)).toBe(value);
  });

  it("lists repeated keys and reads flags", () => {
    expect(modinfoValues(entries, "alias")).toEqual(["a", "b"]);
    expect(modinfoFlag(entries, "livepatch")).toBe(true);
    expect(modinfoFlag(entries, "intree")).toBe(false);
  });
});

describe("splitSignature", () => {
  it.each([
    { case: "unsigned", bytes: Buffer.from("abc"), signed: false },
    { case: "signed", bytes: appendSignature(Buffer.from("abc"), Buffer.from([1, 2, 3])), signed: true },
  ])("$case", ({ bytes, signed }) => {
    const split = splitSignature(bytes);
    expect(split.ok).toBe(true);
    if (!split.ok) return;
    expect(split.signature !== undefined).toBe(signed);
    expect(Buffer.from(split.module).toString()).toBe("abc");
  });

  it("refuses a trailer without room for the signature info", () => {
    expect(splitSignature(Buffer.from("~Module signature appended~\n"))).toMatchObject({ ok: false });
  });
});
