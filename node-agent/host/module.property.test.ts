/**
 * Property tests of the module parser and checks (parseModule, verifyModule) on bad input: random
 * bytes, truncations, bit flips and field mutations of a valid buildSimModule output.
 * Seeded (SEED) so a failure reproduces; fast-check prints the counterexample.
 *
 *   - parseModule never throws; a failure names an ELF reason;
 *   - verifyModule throws nothing but a HostError with one of the reasons a check can give, and
 *     its message has every placeholder filled;
 *   - whatever verifyModule accepts passes independent oracles read from the raw bytes: an
 *     x86-64 ELF64 little-endian relocatable header, `vermagic=<target release>` followed by
 *     whitespace or NUL, a `livepatch=` entry, a valid module name;
 *   - targeted mutations never pass: another release in vermagic, any byte of the release inside
 *     vermagic, the `livepatch` key, no livepatch=Y, a foreign machine/class/byte order/type, a
 *     wrong pinned digest, more bytes than the limit.
 */
import { createHash } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { buildSimModule } from "../sim/build-module.ts";
import { HostError } from "./host-error.ts";
import { appendSignature } from "./module-signature.ts";
import { parseModule } from "./parse-module.ts";
import { REASONS, type Reason } from "./reasons.ts";
import { verifyModule, type VerifiedModule, type VerifyExpectation } from "./verify.ts";

const SEED = 424_242;
const RUNS = 250;
const run = <T>(prop: fc.IProperty<T>, numRuns = RUNS) => fc.assert(prop, { seed: SEED, numRuns });

const RELEASE = "6.1.0-56-amd64";
const NAME = "livepatch_fix";
const GOOD = buildSimModule({ name: NAME, vermagic: RELEASE });
const SIGNED = buildSimModule({ name: NAME, vermagic: RELEASE, signed: true });

const ELF_REASONS: readonly Reason[] = ["NotAnELFModule", "WrongArchitecture", "Truncated"];
const VERIFY_REASONS: readonly Reason[] = [
  ...ELF_REASONS,
  "ModuleTooLarge",
  "NoBuildId",
  "ChecksumMismatch",
  "InvalidModuleName",
  "NotALivepatch",
  "VermagicMismatch",
];

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
const latin1 = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("latin1");
const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

type Outcome = { ok: true; module: VerifiedModule } | { ok: false; reason: Reason };

/** verifyModule, asserting that a failure is a HostError with a known reason and a complete message. */
function verify(bytes: Uint8Array, expectation: Partial<VerifyExpectation> = {}, maxBytes?: number): Outcome {
  try {
    return { ok: true, module: verifyModule(bytes, { kernelRelease: RELEASE, ...expectation }, maxBytes) };
  } catch (error) {
    expect(error).toBeInstanceOf(HostError);
    const e = error as HostError;
    expect(VERIFY_REASONS).toContain(e.reason);
    for (const placeholder of REASONS[e.reason].message.match(/\{\w+\}/g) ?? []) expect(e.message).not.toContain(placeholder);
    return { ok: false, reason: e.reason };
  }
}

/** parseModule never throws and fails only with an ELF reason. */
function parsesSafely(bytes: Uint8Array): void {
  const parsed = parseModule(bytes);
  if (!parsed.ok) expect(ELF_REASONS).toContain(parsed.reason);
}

/** Independent oracles for anything accepted for `release`. */
function expectSound(bytes: Uint8Array, outcome: Outcome, release = RELEASE): void {
  if (!outcome.ok) return;
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  expect(b.readUInt32BE(0)).toBe(0x7f454c46); // \x7fELF
  expect([b[4], b[5], b.readUInt16LE(16), b.readUInt16LE(18)]).toEqual([2, 1, 1, 62]); // ELF64, LE, ET_REL, x86-64
  expect(outcome.module.kernelRelease).toBe(release);
  expect(latin1(bytes)).toMatch(new RegExp(`vermagic=\\s*${escapeRe(release)}[\\s\\0]`));
  expect(latin1(bytes)).toContain("livepatch=");
  expect(outcome.module.name).toMatch(/^[A-Za-z0-9_-]{1,55}$/);
}

function mutate(base: Buffer, edit: (b: Buffer) => void): Buffer {
  const copy = Buffer.from(base);
  edit(copy);
  return copy;
}

/** Offsets of the bytes of `needle`'s part `part` inside `base` (first occurrence). */
function region(base: Buffer, needle: string, part = needle): { from: number; to: number } {
  const at = base.indexOf(needle, 0, "latin1");
  if (at < 0) throw new Error(`${needle} not in the module`);
  const from = at + needle.indexOf(part);
  return { from, to: from + part.length };
}

const SHOFF = Number(GOOD.readBigUInt64LE(40));
const SHNUM = GOOD.readUInt16LE(60);
const releaseBytes = region(GOOD, `vermagic=${RELEASE}`, RELEASE);
const livepatchKey = region(GOOD, "livepatch=Y", "livepatch");
const livepatchValue = region(GOOD, "livepatch=Y", "Y");

const releaseArb = fc.oneof(
  fc.stringMatching(/^[A-Za-z0-9._+~-]{1,40}$/),
  fc.constantFrom("6.1.0-56-amd6", "6.1.0-56-amd64x", "6.1.0-56", "6.1.0-57-amd64", "6.1.0-56-AMD64", "56-amd64"),
);

describe("parseModule and verifyModule on bad input (property)", () => {
  it("random bytes: no throw, only known reasons, nothing accepted", () => {
    run(
      fc.property(fc.uint8Array({ maxLength: 2048 }), (bytes) => {
        parsesSafely(bytes);
        expect(verify(bytes).ok).toBe(false);
      }),
    );
  });

  it("random bytes behind a valid x86-64 ELF header: no throw, only known reasons", () => {
    run(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 2048 }), fc.nat({ max: 64 }), (tail, keep) => {
        const bytes = Buffer.concat([GOOD.subarray(0, keep), tail]);
        parsesSafely(bytes);
        expectSound(bytes, verify(bytes));
      }),
    );
  });

  it("truncations: an unsigned module cut anywhere is refused", () => {
    run(
      fc.property(fc.nat({ max: GOOD.length - 1 }), (length) => {
        const bytes = GOOD.subarray(0, length);
        parsesSafely(bytes);
        const outcome = verify(bytes);
        expect(outcome.ok).toBe(false);
        expect(["NotAnELFModule", "Truncated"]).toContain((outcome as { reason: Reason }).reason);
      }),
    );
  });

  it("truncations of a signed module: only a cut inside the signature can pass, and then as unsigned", () => {
    run(
      fc.property(fc.nat({ max: SIGNED.length - 1 }), (length) => {
        const bytes = SIGNED.subarray(0, length);
        parsesSafely(bytes);
        const outcome = verify(bytes);
        expectSound(bytes, outcome);
        if (outcome.ok) {
          expect(length).toBeGreaterThanOrEqual(GOOD.length);
          expect(outcome.module.signed).toBe(false);
        }
      }),
    );
  });

  it("bit flips anywhere: no throw, and anything accepted passes the oracles", () => {
    run(
      fc.property(fc.array(fc.tuple(fc.nat({ max: GOOD.length - 1 }), fc.nat({ max: 7 })), { minLength: 1, maxLength: 8 }), (flips) => {
        const bytes = mutate(GOOD, (b) => flips.forEach(([at, bit]) => (b[at] = b[at]! ^ (1 << bit))));
        parsesSafely(bytes);
        expectSound(bytes, verify(bytes));
      }),
      400,
    );
  });

  it("any change to the release inside vermagic is refused for the node's release", () => {
    run(
      fc.property(fc.integer({ min: releaseBytes.from, max: releaseBytes.to - 1 }), fc.integer({ min: 0, max: 255 }), (at, value) => {
        fc.pre(GOOD[at] !== value);
        const bytes = mutate(GOOD, (b) => void (b[at] = value));
        const outcome = verify(bytes);
        expect(outcome.ok).toBe(false);
      }),
    );
  });

  it("any change to the livepatch key is refused; its value passes only as Y, y or 1", () => {
    run(
      fc.property(fc.integer({ min: livepatchKey.from, max: livepatchValue.to - 1 }), fc.integer({ min: 1, max: 255 }), (at, value) => {
        fc.pre(GOOD[at] !== value);
        const bytes = mutate(GOOD, (b) => void (b[at] = value));
        const outcome = verify(bytes);
        if (at < livepatchKey.to) expect(outcome).toEqual({ ok: false, reason: "NotALivepatch" });
        else expect(outcome.ok).toBe(["Y", "y", "1"].includes(String.fromCharCode(value)));
      }),
    );
  });

  it("foreign header fields are refused with the right reason", () => {
    const field = fc.oneof(
      fc.integer({ min: 0, max: 0xffff }).filter((m) => m !== 62).map((m) => ({ at: 18, size: 2, value: m, reason: "WrongArchitecture" as const })),
      fc.integer({ min: 0, max: 0xffff }).filter((t) => t !== 1).map((t) => ({ at: 16, size: 2, value: t, reason: "NotAnELFModule" as const })),
      fc.integer({ min: 0, max: 255 }).filter((c) => c !== 2).map((c) => ({ at: 4, size: 1, value: c, reason: "WrongArchitecture" as const })),
      fc.integer({ min: 0, max: 255 }).filter((d) => d !== 1).map((d) => ({ at: 5, size: 1, value: d, reason: "WrongArchitecture" as const })),
    );
    run(
      fc.property(field, ({ at, size, value, reason }) => {
        const bytes = mutate(GOOD, (b) => void (size === 1 ? (b[at] = value) : b.writeUInt16LE(value, at)));
        expect(verify(bytes)).toEqual({ ok: false, reason });
      }),
    );
  });

  it("random section-table fields (e_shoff, e_shentsize, e_shnum, e_shstrndx, section headers): no throw, oracles hold", () => {
    const u64 = fc.oneof(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), fc.bigInt({ min: 0n, max: 4096n }));
    const edit = fc.oneof(
      u64.map((v) => (b: Buffer) => void b.writeBigUInt64LE(v, 40)),
      fc.integer({ min: 0, max: 0xffff }).map((v) => (b: Buffer) => void b.writeUInt16LE(v, 58)),
      fc.integer({ min: 0, max: 0xffff }).map((v) => (b: Buffer) => void b.writeUInt16LE(v, 60)),
      fc.integer({ min: 0, max: 0xffff }).map((v) => (b: Buffer) => void b.writeUInt16LE(v, 62)),
      fc
        .tuple(fc.nat({ max: SHNUM - 1 }), fc.constantFrom(0, 4), fc.integer({ min: 0, max: 0xffffffff }))
        .map(([i, off, v]) => (b: Buffer) => void b.writeUInt32LE(v, SHOFF + i * 64 + off)), // sh_name, sh_type
      fc.tuple(fc.nat({ max: SHNUM - 1 }), fc.constantFrom(24, 32), u64).map(([i, off, v]) => (b: Buffer) => void b.writeBigUInt64LE(v, SHOFF + i * 64 + off)), // sh_offset, sh_size
    );
    run(
      fc.property(fc.array(edit, { minLength: 1, maxLength: 3 }), (edits) => {
        const bytes = mutate(GOOD, (b) => edits.forEach((e) => e(b)));
        parsesSafely(bytes);
        expectSound(bytes, verify(bytes));
      }),
      400,
    );
  });

  it("a module built for another release is refused for the node and accepted for its own", () => {
    run(
      fc.property(releaseArb, (other) => {
        fc.pre(other !== RELEASE);
        const bytes = buildSimModule({ name: NAME, vermagic: other });
        expect(verify(bytes)).toEqual({ ok: false, reason: "VermagicMismatch" });
        const own = verify(bytes, { kernelRelease: other });
        expectSound(bytes, own, other);
        expect(own.ok).toBe(true);
      }),
    );
  });

  it("a module without livepatch=Y never passes, whatever else its .modinfo says", () => {
    const entry = fc.tuple(fc.stringMatching(/^[a-z_]{1,12}$/), fc.stringMatching(/^[ -~]{0,20}$/)).filter(([k]) => k !== "livepatch");
    run(
      fc.property(fc.array(entry, { maxLength: 6 }), fc.boolean(), (extra, signed) => {
        const bytes = buildSimModule({ name: NAME, vermagic: RELEASE, livepatch: false, extraModinfo: extra, signed });
        expect(verify(bytes)).toEqual({ ok: false, reason: "NotALivepatch" });
      }),
    );
  });

  it("module names: accepted only when valid, and then as written", () => {
    const name = fc.oneof(fc.stringMatching(/^[A-Za-z0-9_-]{1,55}$/), fc.stringMatching(/^[A-Za-z0-9_./ \\-]{0,60}$/), fc.string({ maxLength: 60 }));
    run(
      fc.property(name, (n) => {
        fc.pre(!n.includes("\0"));
        const bytes = buildSimModule({ name: n, vermagic: RELEASE });
        parsesSafely(bytes);
        const outcome = verify(bytes);
        expectSound(bytes, outcome);
        // A valid name as kbuild writes it (no '-': KBUILD_MODNAME turns it into '_') is accepted as
        // written; a name with a dash could never be unloaded by name and is refused.
        if (/^[A-Za-z0-9_]{1,55}$/.test(n)) expect(outcome.ok && outcome.module.name).toBe(n);
        if (n.includes("-")) expect(outcome.ok ? "ok" : outcome.reason).not.toBe("ok");
      }),
    );
  });

  it("an expected name passes only when it is the module's own, dashes and underscores alike", () => {
    run(
      fc.property(fc.stringMatching(/^[A-Za-z0-9_-]{1,55}$/), (expected) => {
        const outcome = verify(GOOD, { moduleName: expected });
        const same = expected.replaceAll("-", "_") === NAME;
        expect(outcome.ok ? "ok" : outcome.reason).toBe(same ? "ok" : "InvalidModuleName");
      }),
    );
  });

  it("a pinned digest other than the bytes' own is refused first, even for garbage", () => {
    run(
      fc.property(fc.oneof(fc.constant(GOOD), fc.uint8Array({ maxLength: 256 })), fc.stringMatching(/^[a-f0-9]{64}$/), (bytes, pin) => {
        fc.pre(pin !== sha(bytes));
        expect(verify(bytes, { sha256: pin })).toEqual({ ok: false, reason: "ChecksumMismatch" });
        if (bytes === GOOD) expect(verify(bytes, { sha256: sha(bytes).toUpperCase() }).ok).toBe(true);
      }),
    );
  });

  it("more bytes than the limit are refused before anything else", () => {
    run(
      fc.property(fc.nat({ max: GOOD.length - 1 }), (limit) => {
        expect(verify(GOOD, { sha256: "0".repeat(64) }, limit)).toEqual({ ok: false, reason: "ModuleTooLarge" });
        expect(verify(GOOD, {}, GOOD.length).ok).toBe(true);
      }),
      50,
    );
  });

  it("random signature trailers: no throw; a length past the start of the file is Truncated", () => {
    run(
      fc.property(fc.uint8Array({ maxLength: 128 }), fc.integer({ min: 0, max: 0xffffffff }), (blob, length) => {
        const bytes = mutate(appendSignature(GOOD, blob), (b) => void b.writeUInt32BE(length, b.length - 28 - 12 + 8));
        parsesSafely(bytes);
        const outcome = verify(bytes);
        expectSound(bytes, outcome);
        if (length > GOOD.length + blob.length) expect(outcome).toEqual({ ok: false, reason: "Truncated" });
        if (length === blob.length) expect(outcome.ok && outcome.module.signed).toBe(true);
      }),
    );
  });
});
