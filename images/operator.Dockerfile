# The operator: one esbuild bundle on a base that provides Node 24. Runs as 65532 and writes nothing
# to its root filesystem (the chart mounts it read-only, with an emptyDir on /tmp).
ARG BASE_IMAGE=kpatch-base:bookworm
FROM ${BASE_IMAGE}
COPY operator.mjs /app/operator.mjs
USER 65532:65532
WORKDIR /app
ENV HOME=/tmp
EXPOSE 8080 8081
CMD ["node", "/app/operator.mjs"]
