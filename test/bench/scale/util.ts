/** Small helpers of the scale benchmark. */

/** Runs `f` over `items` with at most `limit` in flight. */
export async function pool<T, R>(items: readonly T[], limit: number, f: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < items.length; i = next++) out[i] = await f(items[i]!, i);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/** An HTTP status, or what went wrong on the client's side (e.g. its 30 s request timeout). */
export function failureKind(err: unknown): string {
  const code = (err as { code?: unknown }).code;
  if (typeof code === "number") return String(code);
  const message = err instanceof Error ? err.message : String(err);
  if (/timed out/.test(message)) return "client timeout";
  return typeof code === "string" ? code : message.slice(0, 40);
}
