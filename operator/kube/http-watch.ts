/**
 * The informers' watch over the small HTTP client the agents use (node-agent/kube), in place of
 * @kubernetes/client-node's Watch: the operator no longer loads that client (about 85 MiB of a
 * Node process's RSS), which is what keeps it near its memory budget at a thousand nodes.
 *
 * As client-node's Watch did, a stream silent for `inactivityMs` ends with a TimeoutError, which
 * the informer answers by watching again from the last resourceVersion.
 */
import type { KubeHttp } from "../../kube/http-client.ts";
import { lines } from "../../node-agent/kube/watcher.ts";
import type { WatchPort } from "./informer.ts";

export function httpWatch(http: KubeHttp, inactivityMs = 30_000): WatchPort {
  return {
    async watch(path, query, callback, done) {
      const q: Record<string, string> = { watch: "1" };
      for (const [k, v] of Object.entries(query)) if (v !== undefined) q[k] = String(v);
      const res = await http.stream(path, { query: q });
      let finished = false;
      const finish = (err?: unknown) => {
        if (finished) return;
        finished = true;
        clearTimeout(timer);
        done(err);
      };
      const idle = () => res.destroy(Object.assign(new Error(`no event on the watch of ${path} for ${inactivityMs} ms`), { name: "TimeoutError" }));
      let timer = setTimeout(idle, inactivityMs);
      res.setEncoding("utf8");
      void (async () => {
        try {
          for await (const line of lines(res)) {
            clearTimeout(timer);
            timer = setTimeout(idle, inactivityMs);
            if (!line.trim()) continue;
            const ev = JSON.parse(line) as { type: string; object: unknown };
            callback(ev.type, ev.object);
            if (ev.type === "ERROR") {
              res.destroy();
              return;
            }
          }
          finish(res.errored ?? (res.complete || finished ? undefined : new Error(`the watch of ${path} was cut off`)));
        } catch (err) {
          finish(err);
        }
      })();
      return {
        abort: () => {
          finish();
          res.destroy();
        },
      };
    },
  };
}
