import type { Logger } from "pino";
import { isLoaderError, type Clock } from "./ports.ts";

export interface BusyRetry {
  tries: number;
  delayMs: number;
  clock: Clock;
  log: Logger;
}

/** Runs `act`, retrying only when the loader answers EBUSY (kpatch: 5 tries, 2 s apart). */
export async function retryOnBusy<T>(what: string, retry: BusyRetry, act: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await act();
    } catch (error) {
      if (!isLoaderError(error) || error.code !== "EBUSY" || attempt >= retry.tries) throw error;
      retry.log.info({ attempt, of: retry.tries }, `${what}: device or resource busy, retrying`);
      await retry.clock.sleep(retry.delayMs);
    }
  }
}
