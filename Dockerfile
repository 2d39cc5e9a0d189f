# The Hotline relay server. Data (SQLite database, token secret) lives in the /data volume; the
# agreement is read from HOTLINE_AGREEMENT (by default /data/agreement.json: copy it there first).
FROM node:20-bookworm-slim
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund
COPY . .
RUN mkdir -p /data && chown node:node /data
USER node
EXPOSE 8080
CMD ["node", "bin/hotline.js", "server"]
