# The operator: one esbuild bundle on a base that provides Node 24. Runs as 65532 and writes nothing
# to its root filesystem (the chart mounts it read-only, with an emptyDir on /tmp).
ARG BASE_IMAGE=kpatch-base:bookworm
FROM ${BASE_IMAGE}
COPY operator.mjs re2js.mjs /app/
USER 65532:65532
WORKDIR /app
ENV HOME=/tmp MALLOC_ARENA_MAX=2 MALLOC_MMAP_THRESHOLD_=131072
EXPOSE 8080 8081
# A 1 MiB young generation: the operator's garbage is many small short-lived objects (watch
# events, parsed entries); the default semi-spaces kept ~100 MiB more RSS at 1000 nodes × 10
# patches for a few percent less CPU (docs/benchmarks.md).
CMD ["node", "--max-semi-space-size=1", "--optimize-for-size", "/app/operator.mjs"]
