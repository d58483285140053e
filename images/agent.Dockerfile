# The node agent (the DaemonSet pod started by the operator) and the kpatch-agent CLI.
# kmod provides insmod/rmmod/modinfo for the real-kernel loader. busybox-static is the copy tool of
# module images: a statically linked binary the agent pod's init containers run inside a module
# image, which then needs no cp or libc of its own (operator/agents/module-copy.ts). Needs network
# for apt during the build (scripts/images/build.sh builds with --network host).
ARG BASE_IMAGE=kpatch-base:bookworm
FROM ${BASE_IMAGE}
RUN set -eu; \
    apt-get update -qq; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends kmod busybox-static >/dev/null; \
    apt-get clean; \
    rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /usr/share/doc/* /usr/share/man/*; \
    command -v insmod rmmod modinfo >/dev/null; \
    /bin/busybox --list | grep -qx cp
# re2js.mjs: the RE2 engine, imported only once a patch uses a kernelReleasePattern.
COPY node-agent.mjs kpatch-agent.mjs re2js.mjs /app/
WORKDIR /app
# The CLI: docker run --rm kpatch-agent:dev node /app/kpatch-agent.mjs --help
# The agent runs on every node, so its idle memory is paid a thousand times: without V8's JIT and
# its helper threads it idles ~7 MiB lower (npm run bench:agent-rss; it reads these flags from here).
# Its work is I/O and JSON.parse, which the interpreter handles as fast.
CMD ["node", "--single-threaded", "--jitless", "/app/node-agent.mjs"]
