import type { KubeHttp } from "../../kube/http-client.ts";

/** Items per page: 1000 node objects of ~16 KiB arrive as four ~4 MB pages, not one 16 MB body. */
export const PAGE_SIZE = 250;

interface ListPage<T> {
  items: T[];
  metadata?: { resourceVersion?: string; continue?: string };
}

/**
 * A list read page by page (`limit`/`continue`: every page from the same snapshot), each item passed
 * through `keep` as its page arrives, so the full objects of only one page are alive at a time.
 * An expired continue token (410) fails the list; the informer lists again.
 */
export async function pagedList<T>(
  http: KubeHttp,
  path: string,
  query: Record<string, string>,
  keep: (obj: T) => T,
  limit = PAGE_SIZE,
): Promise<{ items: T[]; metadata: { resourceVersion?: string } }> {
  const items: T[] = [];
  let next: string | undefined;
  let resourceVersion: string | undefined;
  do {
    const page: ListPage<T> = await http.json("GET", path, { query: { ...query, limit, continue: next } });
    for (const o of page.items) items.push(keep(o));
    next = page.metadata?.continue || undefined;
    resourceVersion = page.metadata?.resourceVersion;
  } while (next);
  return { items, metadata: resourceVersion === undefined ? {} : { resourceVersion } };
}
