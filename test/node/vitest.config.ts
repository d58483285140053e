// The real-node suite alone: `npx vitest run --config test/node/vitest.config.ts`. The same
// settings as its `node` project entry in the root vitest.config.ts.
import path from "node:path";
import { defineConfig } from "vitest/config";

export default defineConfig({
  root: path.resolve(import.meta.dirname, "../.."),
  test: {
    name: "node",
    include: ["test/node/**/*.test.ts"],
    globalSetup: ["test/node/global-setup.ts"],
    testTimeout: 300_000,
    hookTimeout: 1_200_000,
    fileParallelism: false,
  },
});
