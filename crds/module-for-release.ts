import type { RE2JS } from "re2js";
import type { PatchModule } from "./schema.ts";

let engine: typeof RE2JS | undefined;

/**
 * Loads the RE2 engine (re2js) once. Loading it costs a process about 5 MiB, which the agent (on
 * every node) pays only once a patch it sees uses a kernelReleasePattern; the operator loads it
 * when it starts. Matching or validating a pattern before this has resolved is a programming
 * error, and throws.
 */
export async function loadReleasePatternEngine(): Promise<void> {
  engine ??= (await import("re2js")).RE2JS;
}

export function releasePatternEngineLoaded(): boolean {
  return engine !== undefined;
}

/** Whether any module in a raw (unparsed) spec uses a kernelReleasePattern. */
export function usesReleasePattern(spec: unknown): boolean {
  const modules = (spec as { modules?: unknown } | undefined)?.modules;
  return Array.isArray(modules) && modules.some((m) => (m as { kernelReleasePattern?: unknown } | null)?.kernelReleasePattern !== undefined);
}

/**
 * The module of a patch that applies to a kernel release: an exact `kernelRelease` wins over a
 * pattern; among patterns the first listed wins. Patterns match the whole release.
 * `undefined` means the node is NotApplicable.
 */
export function moduleForRelease(modules: readonly PatchModule[], release: string): PatchModule | undefined {
  const exact = modules.find((m) => m.kernelRelease === release);
  if (exact) return exact;
  return modules.find((m) => m.kernelReleasePattern !== undefined && releaseMatchesPattern(m.kernelReleasePattern, release));
}

/**
 * Whether a kernel release matches a kernelReleasePattern: the one place a pattern is matched.
 *
 * A full match — the pattern must match the whole release, as if written `^(?:pattern)$`, however
 * it is anchored itself (CEL's `matches()` would be a partial match; this is not). The engine is
 * RE2 (re2js), the same syntax the API server checks the pattern with (CEL), and linear in the
 * release's length: a pattern such as `(?:[0-9a-z.-]+)+!` cannot stall the operator or an agent the
 * way it stalls a backtracking engine. An invalid pattern (which admission refuses) matches nothing.
 */
export function releaseMatchesPattern(pattern: string, release: string): boolean {
  return compiledPattern(pattern)?.testExact(release) ?? false;
}

/** Whether RE2 (re2js, the engine of `releaseMatchesPattern`) compiles the pattern. */
export function isValidReleasePattern(pattern: string): boolean {
  return compiledPattern(pattern) !== null;
}

/** At most this many compiled patterns are kept; the least recently used one goes first. */
export const PATTERN_CACHE_SIZE = 256;
const compiled = new Map<string, RE2JS | null>();

function compiledPattern(pattern: string): RE2JS | null {
  if (!engine) throw new Error("kernelReleasePattern used before loadReleasePatternEngine() resolved");
  let re = compiled.get(pattern);
  if (re !== undefined) {
    compiled.delete(pattern); // re-inserted below: Map order is least recently used first
  } else {
    try {
      re = engine.compile(pattern);
    } catch {
      re = null;
    }
    if (compiled.size >= PATTERN_CACHE_SIZE) compiled.delete(compiled.keys().next().value as string);
  }
  compiled.set(pattern, re);
  return re;
}
