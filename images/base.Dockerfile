# kpatch-base: Debian plus the Node 24 binary the project pins (node_modules/node), and an unprivileged
# user 65532. scripts/images/build.sh builds DEBIAN_IMAGE from Debian's packages with debootstrap
# (no registry pull) and passes a build context holding only `node`.
# Production may skip this image: any Debian-based image with Node >= 24 on PATH (node:24-bookworm-slim)
# works as BASE_IMAGE of operator.Dockerfile and agent.Dockerfile.
ARG DEBIAN_IMAGE=kpatch-debian:bookworm
FROM ${DEBIAN_IMAGE}
COPY node /usr/local/bin/node
RUN set -eu; \
    test -x /usr/local/bin/node; \
    node --version; \
    echo 'nonroot:x:65532:65532:nonroot:/home/nonroot:/usr/sbin/nologin' >>/etc/passwd; \
    echo 'nonroot:x:65532:' >>/etc/group; \
    mkdir -p /home/nonroot /app; \
    chown 65532:65532 /home/nonroot
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 \
    NODE_ENV=production
CMD ["node"]
