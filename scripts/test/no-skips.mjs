// Fails when a vitest JSON report holds a test that did not run (skipped, pending, todo).
// `npm test` is CI: a layer whose prerequisite is missing must fail there, never read as a pass.
// Usage: node scripts/test/no-skips.mjs <report.json> <layer>
import { readFileSync } from "node:fs";

const [file, layer] = process.argv.slice(2);
const report = JSON.parse(readFileSync(file, "utf8"));
const notRun = report.testResults.flatMap((f) =>
  f.assertionResults.filter((t) => t.status !== "passed" && t.status !== "failed").map((t) => `${t.status}: ${t.fullName}`),
);
if (report.numTotalTests === 0) notRun.push("the layer ran no test at all");
if (notRun.length > 0) {
  console.error(`\n${layer}: ${notRun.length} test(s) did not run, which fails the layer (KLP_ALLOW_SKIPS=1 allows it locally):`);
  for (const line of notRun.slice(0, 20)) console.error(`  ${line}`);
  process.exit(1);
}
