/**
 * The one kernelReleasePattern matcher (releaseMatchesPattern): a full match in linear time (RE2,
 * re2js), each pattern compiled once, and — on every pattern admission lets through — the same
 * verdict JavaScript's RegExp gave when the operator and the agents matched with it.
 */
import fc from "fast-check";
import { RE2JS } from "re2js";
import { beforeAll, afterEach, describe, expect, it, vi } from "vitest";
import { loadReleasePatternEngine } from "./module-for-release.ts";
import { PATTERN_CACHE_SIZE, isValidReleasePattern, releaseMatchesPattern } from "./module-for-release.ts";
import { PatchModule } from "./schema.ts";

// The RE2 engine loads on demand (crds/module-for-release.ts); these tests match and validate patterns.
beforeAll(() => loadReleasePatternEngine());

const SEED = 20_260_717;

/** The matcher before re2js, kept as the reference the property below compares with. */
const jsFullMatch = (pattern: string, release: string) => new RegExp(`^(?:${pattern})$`).test(release);

/** What admission (the zod side of the CRD's rules) lets through as a kernelReleasePattern. */
const admitted = (pattern: string) =>
  PatchModule.safeParse({ kernelReleasePattern: pattern, sha256: "a".repeat(64), url: "https://x.example/a.ko" }).success;

afterEach(() => void vi.restoreAllMocks());

describe("releaseMatchesPattern: linear time", () => {
  // A backtracking engine takes 2^n steps here: tens of ms at 20 characters, hours at 40. The lengths
  // go up in steps so that a backtracking engine fails the test in seconds instead of hanging it.
  it("a catastrophic pattern, (?:[0-9a-z.-]+)+!, on a 40-character release finishes in well under a second", () => {
    const pattern = "(?:[0-9a-z.-]+)+!";
    const release40 = "6.1.0-56-cloud-amd64-aaaaaaaaaaaaaaaaaaa";
    expect(release40).toHaveLength(40);
    for (const n of [20, 24, 28, 32, 36, 40]) {
      const release = release40.slice(0, n);
      const t0 = performance.now();
      const matched = releaseMatchesPattern(pattern, release);
      const ms = performance.now() - t0;
      expect(matched).toBe(false);
      expect(ms, `a ${n}-character release took ${Math.round(ms)} ms`).toBeLessThan(1000);
    }
    expect(releaseMatchesPattern(pattern, `${release40}!`)).toBe(true);
  });
});

describe("releaseMatchesPattern: a full match, as before", () => {
  it.each<[string, string, boolean]>([
    ["6\\.1", "6.1.0", false], // implicitly anchored at the end
    ["1\\.0", "6.1.0", false], // and at the start
    ["6\\.1\\.0-.*-amd64", "6.1.0-56-amd64", true],
    ["^6\\.1\\.0-56-amd64$", "6.1.0-56-amd64", true], // explicit anchors change nothing
    ["a|ab", "ab", true], // some way of matching the whole release, not the leftmost-first match
    ["6\\.1|5\\.10", "5.10", true], // an alternation is anchored as a whole
    ["6\\.1|5\\.10", "6.1.0", false],
    ["6.1.0-56-amd64", "6x1y0-56-amd64", true], // an unescaped dot is any character
    ["", "", true],
  ])("%s on %s: %s", (pattern, release, expected) => {
    expect(releaseMatchesPattern(pattern, release)).toBe(expected);
    expect(jsFullMatch(pattern, release)).toBe(expected);
  });

  it("an invalid pattern (which admission refuses) matches nothing and does not throw", () => {
    for (const p of ["6.1(", "a{1001}", "(?<n>a)\\k<n>", "[z-a]"]) {
      expect(isValidReleasePattern(p)).toBe(false);
      expect(releaseMatchesPattern(p, "a")).toBe(false);
    }
  });
});

describe("releaseMatchesPattern: each pattern compiled once", () => {
  it("compiles a pattern on first use only", () => {
    const compile = vi.spyOn(RE2JS, "compile");
    const pattern = "compiled-once-[0-9]+";
    for (let i = 0; i < 5; i++) expect(releaseMatchesPattern(pattern, `compiled-once-${i}`)).toBe(true);
    expect(compile.mock.calls.filter(([p]) => p === pattern)).toHaveLength(1);
  });

  it(`keeps at most ${PATTERN_CACHE_SIZE} patterns, dropping the least recently used`, () => {
    const compile = vi.spyOn(RE2JS, "compile");
    const kept = "cache-kept-.*";
    const dropped = "cache-dropped-.*";
    releaseMatchesPattern(dropped, "x");
    releaseMatchesPattern(kept, "x");
    for (let i = 0; i < PATTERN_CACHE_SIZE - 1; i++) {
      releaseMatchesPattern(kept, "x"); // used again: most recently used
      releaseMatchesPattern(`cache-filler-${i}`, "x");
    }
    const compilations = (p: string) => compile.mock.calls.filter(([q]) => q === p).length;
    releaseMatchesPattern(kept, "x");
    expect(compilations(kept)).toBe(1);
    releaseMatchesPattern(dropped, "x");
    expect(compilations(dropped)).toBe(2);
  });
});

// ---------------------------------------------------------------------------------------------
// re2js and JavaScript agree on every admitted pattern

/** Patterns built from the syntax the CRD admits (RE2 and JavaScript read it alike). */
const literal = fc.constantFrom(..."0123456789abcdz_~-".split(""), "\\.", "\\-", "\\+", "\\/", "\\(", "\\]", "\\\\", "\\{");
const escape = fc.constantFrom("\\d", "\\D", "\\w", "\\W", "\\s", "\\S", ".");
const classItem = fc.constantFrom("a", "z", "0", "9", "a-f", "0-5", "_", ".", "+", "~", "\\d", "\\w", "\\s", "\\]", "\\-", "\\\\", "-");
const charClass = fc
  .tuple(fc.boolean(), fc.array(classItem, { minLength: 1, maxLength: 4 }))
  .map(([negated, items]) => `[${negated ? "^" : ""}${items.join("")}]`);
const quantifier = fc.tuple(fc.constantFrom("", "", "*", "+", "?", "{2}", "{0,}", "{1,2}", "{0,3}"), fc.boolean()).map(([q, lazy]) => (q && lazy ? `${q}?` : q));
const anchor = fc.constantFrom("^", "$", "\\b", "\\B");
const { pattern: grammarPattern } = fc.letrec<{ pattern: string; sequence: string; atom: string }>((tie) => ({
  pattern: fc.array(tie("sequence"), { minLength: 1, maxLength: 3 }).map((alts) => alts.join("|")),
  sequence: fc.array(fc.oneof({ arbitrary: tie("atom"), weight: 5 }, { arbitrary: anchor, weight: 1 }), { minLength: 0, maxLength: 4 }).map((xs) => xs.join("")),
  atom: fc.tuple(
    fc.oneof(
      { arbitrary: literal, weight: 4 },
      { arbitrary: escape, weight: 2 },
      { arbitrary: charClass, weight: 2 },
      { arbitrary: fc.tuple(fc.constantFrom("(", "(?:"), tie("pattern")).map(([open, inner]) => `${open}${inner})`), weight: 1, depthSize: "small" },
    ),
    quantifier,
  ).map(([a, q]) => a + q),
}));
/** Any characters, as someone might type them: odd syntax such as `a{,3}`, `]`, `{`, `[]a]` included. */
const scrambledPattern = fc.string({ unit: fc.constantFrom(..."6.1\\0-[]()?:*+|^$dDwWsSbB{},a-_~z".split(""), "[]", "[^]"), minLength: 1, maxLength: 12 });
const admittedPattern = fc.oneof(grammarPattern, scrambledPattern).filter((p) => p.length > 0 && admitted(p) && compilesInJs(p));

/** Printable ASCII, what `uname -r` prints (RE2's `.` also matches \r and its \s not \v; JavaScript's differ). */
const releaseChar = fc.constantFrom(..."0123456789abcdz_~-.+/()]\\{ !AZ".split(""));
const printable = /^[\x20-\x7e]*$/;

function compilesInJs(p: string): boolean {
  try {
    new RegExp(p);
    return true;
  } catch {
    return false;
  }
}

/** Releases the pattern matches (where fast-check can generate them) and arbitrary ones. */
function releasesFor(pattern: string): fc.Arbitrary<string[]> {
  const random = fc.string({ unit: releaseChar, maxLength: 12 });
  let matching: fc.Arbitrary<string> = random;
  try {
    matching = fc.stringMatching(new RegExp(`^(?:${pattern})$`), { size: "xsmall" });
  } catch {
    // syntax fast-check cannot generate from (\b, lazy quantifiers): arbitrary releases only
  }
  return fc.array(fc.oneof(random, matching), { minLength: 1, maxLength: 8 }).map((rs) => rs.filter((r) => r.length <= 16 && printable.test(r)));
}

describe("re2js and JavaScript's RegExp agree on the patterns admission lets through (property)", () => {
  it("the same verdict on printable-ASCII releases, for generated admitted patterns", () => {
    const seen = { patterns: new Set<string>(), matched: 0, unmatched: 0 };
    fc.assert(
      fc.property(admittedPattern.chain((p) => fc.tuple(fc.constant(p), releasesFor(p))), ([pattern, releases]) => {
        for (const release of releases) {
          const js = jsFullMatch(pattern, release);
          expect({ pattern, release, re2: releaseMatchesPattern(pattern, release) }).toEqual({ pattern, release, re2: js });
          seen[js ? "matched" : "unmatched"]++;
        }
        seen.patterns.add(pattern);
      }),
      { seed: SEED, numRuns: 400 },
    );
    // The generators must reach both verdicts on many distinct patterns.
    expect(seen.patterns.size).toBeGreaterThan(200);
    expect(Math.min(seen.matched, seen.unmatched)).toBeGreaterThan(200);
  });

  it("what admission refuses includes every pattern the two read differently: a class starting with ]", () => {
    for (const [pattern, release] of [
      ["[]a]", "]"],
      ["[^]a]", "b"],
    ] as const) {
      expect(releaseMatchesPattern(pattern, release)).not.toBe(jsFullMatch(pattern, release));
      expect(admitted(pattern)).toBe(false);
    }
  });
});
