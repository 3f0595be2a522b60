# The registry as a container image. `npm test` builds it with Docker and runs it
# (test/e2e/docker-image.test.ts), on a base assembled offline and passed as NODE_IMAGE.

# Any Debian-based image with node, npm and a user node (uid 1000), as the official node images have.
ARG NODE_IMAGE=node:26-trixie-slim

# Build stage: compiles TypeScript and better-sqlite3's native module (node-gyp needs python3, make, g++).
FROM ${NODE_IMAGE} AS build
WORKDIR /app
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build && npm prune --omit=dev --no-audit --no-fund

# Runtime stage: compiled code and production dependencies only, as the image's non-root user node
# (uid 1000). Same base image as the build stage: the native module is compiled for its Node and libc.
FROM ${NODE_IMAGE}
ENV NODE_ENV=production \
    REGISTRY_HOST=0.0.0.0 \
    REGISTRY_REGISTRY_STORAGE=/storage/registry \
    REGISTRY_TEMPORARY_REGISTRY_STORAGE=/storage/_tmp \
    REGISTRY_PROXY_STORAGE=/storage/proxy \
    REGISTRY_DATABASE=/storage/index.db
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json configuration.toml.example ./
# A fresh named volume takes this directory's owner, so node can write to it.
RUN mkdir -p /storage && chown node:node /storage
USER node
VOLUME /storage
EXPOSE 5000
# Ready (200 from /readyz) when storage takes writes and the index is open; 503 while shutting down.
# It asks the port the registry listens on: REGISTRY_PORT if set, else the default 5000.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["node", "/app/dist/main.js", "healthcheck"]
# Exec form: node is PID 1 and receives SIGTERM itself (the registry drains for shutdown_timeout).
# A configuration.toml mounted at /app/configuration.toml is read; REGISTRY_* variables override it.
ENTRYPOINT ["node", "/app/dist/main.js"]
CMD ["serve"]
