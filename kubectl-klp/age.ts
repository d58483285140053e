/**
 * A duration as kubectl prints ages (k8s.io/apimachinery duration.HumanDuration): the coarser the
 * longer ago, e.g. 45s, 3m20s, 17m, 5h12m, 30h, 3d4h, 12d, 2y.
 */
export function humanDuration(ms: number): string {
  const s = Math.floor(ms / 1000);
  if (s < 0) return "0s"; // a clock behind the API server's
  if (s < 120) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 10) return s % 60 === 0 ? `${m}m` : `${m}m${s % 60}s`;
  if (m < 180) return `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 8) return m % 60 === 0 ? `${h}h` : `${h}h${m % 60}m`;
  if (h < 48) return `${h}h`;
  const d = Math.floor(h / 24);
  if (h < 24 * 8) return h % 24 === 0 ? `${d}d` : `${d}d${h % 24}h`;
  if (d < 365 * 2) return `${d}d`;
  const y = Math.floor(d / 365);
  if (d < 365 * 8) return d % 365 === 0 ? `${y}y` : `${y}y${d % 365}d`;
  return `${y}y`;
}

/** The age of an RFC 3339 timestamp at `now`; "-" when there is none or it does not parse. */
export function ageOf(timestamp: string | undefined, now: Date): string {
  const t = timestamp === undefined ? NaN : Date.parse(timestamp);
  return Number.isFinite(t) ? humanDuration(now.getTime() - t) : "-";
}
