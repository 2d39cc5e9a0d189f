# syntax=docker/dockerfile:1
# The Hotline relay server (docs/container.md). Two stages: the builder compiles the native module
# (better-sqlite3) and the CLI bundle; the runtime image holds only production dependencies and
# the built files, runs as the unprivileged `node` user, and keeps its data in the /data volume.
# The log key is not in the image: it is mounted as a secret at /run/secrets/hotline_log_key.

# ---- builder ----
FROM node:20-bookworm AS builder
# Tools node-gyp needs when no prebuilt better-sqlite3 binary matches the platform.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
# All dependencies (the build needs esbuild and TypeScript); `prepare` finds no sources yet.
RUN npm ci --no-audit --no-fund
COPY . .
# The CLI bundle (dist/cli), after the sources: .dockerignore keeps any host dist/ out.
RUN npm run build:cli \
 && npm prune --omit=dev --no-audit --no-fund

# ---- runtime ----
FROM node:20-bookworm-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY --from=builder --chown=root:root /app/package.json /app/package-lock.json ./
COPY --from=builder --chown=root:root /app/node_modules ./node_modules
# The sources stay beside the bundle: bin/hotline.js checks the bundle is not older than them.
COPY --from=builder --chown=root:root /app/bin ./bin
COPY --from=builder --chown=root:root /app/shared ./shared
COPY --from=builder --chown=root:root /app/server ./server
COPY --from=builder --chown=root:root /app/client ./client
COPY --from=builder --chown=root:root /app/scripts ./scripts
COPY --from=builder --chown=root:root /app/tsconfig.json /app/tsconfig.build.json ./
COPY --from=builder --chown=root:root /app/dist ./dist
RUN mkdir -p /data && chown node:node /data
USER node
VOLUME ["/data"]
ENV HOTLINE_HOST=0.0.0.0 \
    HOTLINE_PORT=8080 \
    HOTLINE_DATA_DIR=/data/server \
    HOTLINE_AGREEMENT=/data/agreement.json
EXPOSE 8080
CMD ["node", "bin/hotline.js", "server"]
