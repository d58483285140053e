#!/usr/bin/env node
/** kubectl-klp: the kubectl plugin (`kubectl klp --help`); bundled to dist/kubectl-klp by `npm run build`. */
import { kubeconfigConnection } from "../kube/connection.ts";
import { main } from "./cli.ts";
import { httpFleetApi } from "./fleet-api.ts";

process.exitCode = await main(process.argv.slice(2), {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
  env: process.env,
  now: () => new Date(),
  connect: (kubeconfig) => httpFleetApi(kubeconfigConnection(kubeconfig)),
});
