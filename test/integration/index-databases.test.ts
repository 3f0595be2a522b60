/**
 * What the index promises whichever database holds it: SQLite (a file) and PostgreSQL (a throwaway
 * server, shared by "replicas" here: several RegistryIndex instances on one database).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Leases } from '../../src/storage/leases';
import { MIGRATIONS } from '../../src/storage/migrations';
import { RegistryIndex } from '../../src/storage/registry-index';
import { Postgres, startPostgres } from '../helpers/postgres';

let postgres: Postgres;
let dir: string;

beforeAll(async () => {
  postgres = await startPostgres();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'index-databases-'));
});
afterAll(async () => {
  await postgres?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

let files = 0;
const databases: Array<[string, () => Promise<string>]> = [
  ['SQLite', async () => path.join(dir, `index-${++files}.db`)],
  ['PostgreSQL', () => postgres.createDatabase()],
];

describe.each(databases)('the index on %s', (_name, newDatabase) => {
  test('replicas starting together on an empty database migrate it once, to the current version', async () => {
    const database = await newDatabase();
    const replicas = await Promise.all([1, 2, 3, 4].map(() => RegistryIndex.open(database)));
    try {
      const version = replicas[0].sql.dialect === 'postgres'
        ? (await replicas[0].sql.get<{ version: number }>('SELECT version FROM schema_version'))!.version
        : (await replicas[0].sql.get<{ user_version: number }>('PRAGMA user_version'))!.user_version;
      expect(version).toBe(MIGRATIONS.length);
      // Every replica sees what another writes.
      await replicas[0].putManifest(manifest('team/app', 'v1'));
      for (const replica of replicas) expect(await replica.resolveTag('team/app', 'v1')).toBe(DIGEST);
    } finally {
      await Promise.all(replicas.map((replica) => replica.close()));
    }
  });

  test('concurrent writes that create the same repository all succeed (a conflict is retried, not an error)', async () => {
    const database = await newDatabase();
    const a = await RegistryIndex.open(database);
    // Replicas share PostgreSQL; SQLite has one server process, whose transactions take turns.
    const b = a.sql.dialect === 'postgres' ? await RegistryIndex.open(database) : a;
    try {
      await Promise.all(
        Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? a : b).linkBlob('team/race', `sha256:${String(i).padStart(64, '0')}`, i)),
      );
      expect((await a.listRepositories(undefined, undefined)).items).toEqual(['team/race']);
      expect(await b.linkedBlobSize('team/race', `sha256:${'19'.padStart(64, '0')}`)).toBe(19);
    } finally {
      await a.close();
      await b.close();
    }
  });

  test('names sort byte by byte, as the spec\'s lexical order (and the proxy/ range) needs', async () => {
    const index = await RegistryIndex.open(await newDatabase());
    try {
      for (const name of ['b/x', 'B/x', 'a-b/x', 'a_b/x', 'a.b/x', 'proxy/up/x', 'proxy-other/x']) await index.putManifest(manifest(name, 'v1'));
      expect((await index.listRepositories(undefined, undefined)).items).toEqual(['B/x', 'a-b/x', 'a.b/x', 'a_b/x', 'b/x', 'proxy-other/x', 'proxy/up/x']);
      expect((await index.storedBytes()).proxy.blobs).toBe(1);
    } finally {
      await index.close();
    }
  });

  test('a lease is held by one process at a time, until released or expired', async () => {
    const database = await newDatabase();
    const [a, b] = await Promise.all([RegistryIndex.open(database), RegistryIndex.open(database)]);
    let now = 1_000_000;
    const first = new Leases(a.sql, () => now);
    const second = new Leases(b.sql, () => now);
    try {
      expect(await first.acquire('gc', 60_000)).toBe(true);
      expect(await second.acquire('gc', 60_000)).toBe(false);
      expect(await first.acquire('gc', 60_000)).toBe(true); // a renewal
      await first.release('gc');
      expect(await second.acquire('gc', 60_000)).toBe(true);
      // The holder died: once its lease has run out, another takes it.
      now += 60_001;
      expect(await first.acquire('gc', 60_000)).toBe(true);
      let ran = false;
      expect(await second.whileHeld('gc', 60_000, async () => (ran = true))).toEqual({ held: false });
      expect(ran).toBe(false);
      await first.release('gc');
      expect(await second.whileHeld('gc', 60_000, async () => 'done')).toEqual({ held: true, result: 'done' });
      expect(await first.acquire('gc', 60_000)).toBe(true); // released after the work
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });
});

const DIGEST = `sha256:${'a'.repeat(64)}`;

function manifest(repository: string, tag: string) {
  return {
    repository,
    digest: DIGEST,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    size: 100,
    subjectDigest: null,
    artifactType: null,
    annotations: null,
    blobDigests: [],
    manifestDigests: [],
    tag,
  };
}
