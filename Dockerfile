# Build stage: compiles TypeScript and better-sqlite3's native module.
FROM node:24-bookworm-slim AS build
WORKDIR /app
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
RUN npm ci
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build && npm prune --omit=dev

# Runtime stage: compiled code and production dependencies only, as a non-root user.
FROM node:24-bookworm-slim
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
RUN mkdir -p /storage && chown node:node /storage
USER node
VOLUME /storage
EXPOSE 5000
# Alive when /v2/ answers at all below 500: with [auth] on it answers 401 to this anonymous probe.
HEALTHCHECK --interval=30s --timeout=5s \
  CMD ["node", "-e", "fetch('http://127.0.0.1:5000/v2/').then(r => process.exit(r.status < 500 ? 0 : 1), () => process.exit(1))"]
# A configuration.toml mounted at /app/configuration.toml is read; environment variables override it.
ENTRYPOINT ["node", "/app/dist/main.js"]
CMD ["serve"]
