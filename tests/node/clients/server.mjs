// Starts the real postrust binary on a free port below 32768 for a Node test, and stops it.
import { execFileSync, spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.join(here, '..', '..', '..');
const binary = process.env.POSTRUST_BIN ?? path.join(root, 'target', 'debug', 'postrust');
let databases = 0;

/** Runs SQL with psql against `url`; returns its output. */
export function psql(url, sql) {
  return execFileSync('psql', ['-X', '-q', '-t', '-A', '-v', 'ON_ERROR_STOP=1', url, '-c', sql], {
    encoding: 'utf8',
  }).trim();
}

/**
 * A new database with the demo schema, data and roles, on the cluster that scripts/test
 * started (POSTRUST_TEST_DATABASE_URL).
 */
export function demoDatabase() {
  const base = process.env.POSTRUST_TEST_DATABASE_URL;
  if (!base) throw new Error('POSTRUST_TEST_DATABASE_URL is not set: run these tests through scripts/test');
  const name = `node_${process.pid}_${databases++}`;
  psql(base, `CREATE DATABASE "${name}"`);
  const url = base.replace(/\/[^/]*$/, `/${name}`);
  const demo = (file) => ['-f', path.join(root, 'demo', file)];
  execFileSync('psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', url, ...demo('schema.sql'), ...demo('data.sql'), ...demo('roles.sql')]);
  return url;
}

function portIsFree(port) {
  return new Promise((resolve) => {
    const probe = net.createServer();
    probe.once('error', () => resolve(false));
    probe.listen(port, '127.0.0.1', () => probe.close(() => resolve(true)));
  });
}

/** A port below 32768 that nothing listens on now. */
export async function freePort() {
  for (let i = 0; i < 200; i++) {
    const port = 20000 + Math.floor(Math.random() * 12000);
    if (await portIsFree(port)) return port;
  }
  throw new Error('no free port below 32768');
}

async function healthy(port) {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/health`);
    return res.status === 200;
  } catch {
    return false;
  }
}

/**
 * Starts postrust on a fresh demo database (or `env.POSTRUST_DATABASE_URL`) with extra
 * environment; resolves to { url, port, databaseUrl, stop() }.
 */
export async function startServer(env = {}) {
  const port = await freePort();
  const databaseUrl = env.POSTRUST_DATABASE_URL ?? demoDatabase();
  const child = spawn(binary, [], {
    env: {
      ...process.env,
      POSTRUST_LISTEN: `127.0.0.1:${port}`,
      POSTRUST_SHARDS: '2',
      POSTRUST_LOG: 'warn',
      POSTRUST_DATABASE_URL: databaseUrl,
      ...env,
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const deadline = Date.now() + 10_000;
  while (!(await healthy(port))) {
    if (child.exitCode !== null) throw new Error(`postrust exited with ${child.exitCode}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error('postrust did not start');
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return {
    port,
    databaseUrl,
    url: `ws://127.0.0.1:${port}/graphql`,
    /** SIGTERM, then the exit status. */
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      return exited;
    },
  };
}
