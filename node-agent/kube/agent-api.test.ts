/**
 * agentEvents when the API server cannot be reached. What the Events look like on a real API
 * server (aggregation, the rate bound, a repeat patching its create) is
 * test/integration/agent-events.test.ts.
 */
import { createServer } from "node:net";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { KubeHttp } from "../../kube/http-client.ts";
import { agentEvents } from "./agent-api.ts";

/** An address nothing listens on: a port the system gave and that was closed again. */
async function refusedAddress(): Promise<string> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as { port: number };
  await new Promise((r) => server.close(r));
  return `https://127.0.0.1:${port}`;
}

describe("agentEvents", () => {
  it("a failing API server never reaches the caller: the failure is logged and counted", async () => {
    const lines: Array<{ msg?: string }> = [];
    const spy = pino({ level: "debug" }, { write: (l: string) => void lines.push(JSON.parse(l) as { msg?: string }) });
    const http = new KubeHttp({ server: await refusedAddress() });
    const event = agentEvents(http, "n1", spy);
    expect(() => event({ name: "cve-1" }, "Warning", "Failed", "boom")).not.toThrow();
    await event.flush();
    expect(event.stats()).toMatchObject({ created: 2, failed: 2 });
    expect(lines.filter((l) => l.msg === "could not record event")).toHaveLength(2);
    http.close();
  });
});
