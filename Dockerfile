# syntax=docker/dockerfile:1
#
# dsp-fhir-server image.
#   docker build -t dsp-fhir-server .
#   docker run -p 8080:8080 -v dsp-data:/data dsp-fhir-server            (embedded SQLite store in /data)
#   docker compose up                                                   (with a MongoDB replica set)
#
# The project pins Node 24 through the npm package "node" (package.json): `npm ci` puts the Node 24 binary in
# node_modules/node/bin/node, so the runtime stage needs no Node of its own and nothing is downloaded at run
# time. Node 24 runs the TypeScript sources directly (type stripping): there is no compile step.

# ---------------------------------------------------------------- build
FROM node:24-bookworm-slim AS build
WORKDIR /app
ENV NPM_CONFIG_UPDATE_NOTIFIER=false NPM_CONFIG_FUND=false NPM_CONFIG_AUDIT=false

# Dependencies first, so that this layer is cached while only sources change.
COPY package.json package-lock.json ./
# Local placeholder packages that package.json overrides point at (see docs/decisions.md).
COPY vendor ./vendor
RUN npm ci \
 && npm prune --omit=dev \
 && node_modules/.bin/node --version

COPY . .
# profiles/ and terminology/ may be empty, and git does not keep empty folders: make sure both exist.
RUN mkdir -p profiles terminology examples

# ---------------------------------------------------------------- runtime
FROM debian:bookworm-slim AS runtime

# Unprivileged user owning only the data folder; the application files stay read-only for it.
RUN groupadd --system --gid 10001 dsp \
 && useradd --system --uid 10001 --gid dsp --home-dir /app --no-create-home --shell /usr/sbin/nologin dsp \
 && mkdir -p /data \
 && chown dsp:dsp /data

WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/src ./src
COPY --from=build /app/examples ./examples
COPY --from=build /app/profiles ./profiles
COPY --from=build /app/terminology ./terminology

ENV NODE_ENV=production \
    PORT=8080 \
    DSP_HOST=0.0.0.0 \
    DSP_DATA_DIR=/data

USER dsp
EXPOSE 8080
VOLUME ["/data"]

HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["/app/node_modules/.bin/node", "-e", "fetch('http://localhost:8080/fhir/metadata', { headers: { accept: 'application/fhir+json' } }).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]

CMD ["node_modules/.bin/node", "src/cli/main.ts", "serve"]
