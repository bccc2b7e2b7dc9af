// What both gateway tests share: the images subgraph binary started as production runs it, tokens
// minted by its own `token` command, the composed supergraph, a client that posts to a gateway
// and returns the subgraph requests the query caused, and the consumer operations of
// `schema/operations/`.
//
// IMAGES_SUBGRAPH_BIN names the binary (default: target/debug/images-subgraph, or under
// CARGO_TARGET_DIR); E2E_VERBOSE=1 shows the subgraph's log.

import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';

import { compose } from '../../schema/compose.mjs';

export const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const binary =
  process.env.IMAGES_SUBGRAPH_BIN ??
  join(process.env.CARGO_TARGET_DIR ?? join(repo, 'target'), 'debug', 'images-subgraph');
export const JWT_SECRET = 'gateway-e2e-secret';
export const ROUTER_SECRET = 'gateway-e2e-router-secret';

async function freePort() {
  const server = createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/// Starts the images subgraph as production would run it (explicit database, JWT secret and
/// router secret), with the demo catalog; resolves to `{ url, stop }` once it is ready.
export async function startImages() {
  const dir = mkdtempSync(join(tmpdir(), 'images-e2e-'));
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const child = spawn(
    binary,
    ['--listen', `127.0.0.1:${port}`, '--database-url', `sqlite://${join(dir, 'e2e.db')}?mode=rwc`],
    {
      cwd: dir,
      env: {
        ...process.env,
        JWT_SECRET,
        ROUTER_SECRET,
        SEED_DEMO: 'true',
        // The demo catalog without its drawn pictures: drawing and measuring them takes minutes.
        SEED_DEMO_PICTURES: 'false',
        DATABASE_URL: '',
      },
      stdio: ['ignore', process.env.E2E_VERBOSE ? 'inherit' : 'pipe', process.env.E2E_VERBOSE ? 'inherit' : 'pipe'],
    },
  );
  let log = '';
  child.stdout?.on('data', (chunk) => (log += chunk));
  child.stderr?.on('data', (chunk) => (log += chunk));
  const exited = new Promise((resolve) => child.on('exit', resolve));
  const stop = async () => {
    child.kill('SIGTERM');
    await exited;
    rmSync(dir, { recursive: true, force: true });
  };
  for (let attempt = 0; attempt < 600; attempt++) {
    if (child.exitCode !== null) break;
    const ready = await fetch(`${base}/health/ready`).then((r) => r.ok, () => false);
    if (ready) return { url: `${base}/graphql`, stop };
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  await stop();
  throw new Error(`the images subgraph (${binary}) did not become ready:\n${log.slice(-4000)}`);
}

/// The supergraph of `schema/compose.mjs`, with each subgraph's placeholder URL replaced by
/// its real address (`urls`: subgraph name -> URL).
export function supergraph(urls) {
  const { supergraphSdl, errors } = compose();
  assert.deepEqual(errors, [], 'the supergraph composes');
  let sdl = supergraphSdl;
  for (const [name, url] of Object.entries(urls)) {
    const placeholder = `http://${name}.invalid/graphql`;
    assert.ok(sdl.includes(placeholder), `the supergraph routes ${name}`);
    sdl = sdl.replaceAll(placeholder, url);
  }
  return sdl;
}

/// A token minted by the subgraph's own `token` command.
export function token(...args) {
  return execFileSync(binary, ['token', ...args], {
    env: { ...process.env, JWT_SECRET },
    encoding: 'utf8',
  }).trim();
}

/// A client of the gateway at `url()` (a function: the gateway starts after the module
/// loads) whose subgraph requests are pushed onto `sent`: `ask(query, { variables, bearer })`
/// resolves to the answer's JSON, its HTTP `status` and the subgraph requests it caused.
export function client(url, sent) {
  return async function ask(query, { variables, bearer } = {}) {
    const first = sent.length;
    const response = await fetch(url(), {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(bearer && { authorization: `Bearer ${bearer}` }) },
      body: JSON.stringify({ query, variables }),
    });
    return { status: response.status, ...(await response.json()), sent: sent.slice(first) };
  };
}

export const codes = (errors = []) => errors.map((e) => e.extensions?.code);

/// The consumer operations of `schema/operations/`: `{ name, team, document, variables }`, the
/// variables taken from the file's `# variables:` comment.
export function consumerOperations() {
  const root = join(repo, 'schema', 'operations');
  return readdirSync(root).flatMap((team) =>
    readdirSync(join(root, team))
      .filter((file) => file.endsWith('.graphql'))
      .map((file) => {
        const document = readFileSync(join(root, team, file), 'utf8');
        const variables = document.match(/^# variables: (.*)$/m);
        return {
          name: basename(file, '.graphql'),
          team,
          document,
          variables: variables ? JSON.parse(variables[1]) : {},
        };
      }),
  );
}
