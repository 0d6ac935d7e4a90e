# One dsync node per container. Build: docker build -t dsync .
# Run a 3-node cluster with: docker compose up (see compose.yaml).
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# Scripts off: `prepare` builds, and the sources are not copied yet.
RUN npm ci --ignore-scripts
COPY . .
RUN npm run build && npm prune --omit=dev

FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production HOST=0.0.0.0 PORT=7401 HTTP_PORT=8401 CONSOLE_PORT=9401 DATA_DIR=/data
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/bin ./bin
# The status page at / is served from these files as they are (server/node/status.ts finds them next to dist/).
COPY --from=build /app/server/node/status ./server/node/status
COPY package.json ./
# Not root: the image's `node` user (uid 1000) owns the data directory (a fresh volume copies this ownership).
RUN mkdir -p /data && chown node:node /data
USER node
VOLUME ["/data"]
EXPOSE 7401 8401 9401
# Healthy = ready: group 0 has a leader this node reaches and it has applied what is committed (/readyz).
# /livez only says the process serves; /healthz is kept for older probes.
HEALTHCHECK --interval=5s --timeout=2s --retries=6 CMD node -e "fetch('http://127.0.0.1:'+process.env.HTTP_PORT+'/readyz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
# NODE_ID and PEERS come from the environment (see compose.yaml).
ENTRYPOINT ["node", "bin/dsync.js", "node"]
