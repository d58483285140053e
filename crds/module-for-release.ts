import type { PatchModule } from "./schema.ts";

/**
 * The module of a patch that applies to a kernel release: an exact `kernelRelease` wins over a
 * pattern; among patterns the first listed wins. Patterns match the whole release.
 * `undefined` means the node is NotApplicable.
 */
export function moduleForRelease(modules: readonly PatchModule[], release: string): PatchModule | undefined {
  const exact = modules.find((m) => m.kernelRelease === release);
  if (exact) return exact;
  return modules.find((m) => m.kernelReleasePattern !== undefined && wholeMatch(m.kernelReleasePattern, release));
}

function wholeMatch(pattern: string, value: string): boolean {
  try {
    return new RegExp(`^(?:${pattern})$`).test(value);
  } catch {
    return false;
  }
}
