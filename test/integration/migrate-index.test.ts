import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { migrateIndex } from '../../src/storage/migrate-index';
import { RegistryIndex } from '../../src/storage/registry-index';
import { Postgres, startPostgres } from '../helpers/postgres';
import { digestOf, RegistryClient } from '../helpers/registry-client';
import { createTestApp } from '../helpers/test-app';

/**
 * `registry migrate-index --from FILE`: a single-node registry's SQLite index copied into PostgreSQL, after
 * which the same storage serves from the new index as before, and new writes continue where the copy ended.
 */
let postgres: Postgres;
let storageDir: string;

beforeAll(async () => {
  postgres = await startPostgres();
  storageDir = fs.mkdtempSync(path.join(os.tmpdir(), 'migrate-index-'));
});
afterAll(async () => {
  await postgres?.close();
  fs.rmSync(storageDir, { recursive: true, force: true });
});

test('what a SQLite registry held pulls the same from PostgreSQL, and pushes continue after the copied ids', async () => {
  const before = await createTestApp({ storageDir, overrides: { database: path.join(storageDir, 'index.db') } });
  const pushedBefore = new RegistryClient(before);
  const one = await pushedBefore.pushImage('team/one', { tag: 'v1', layers: 2 });
  const two = await pushedBefore.pushImage('team/two', { tag: 'latest' });
  await pushedBefore.fetch('/v2/team/two/manifests/latest', { method: 'DELETE' }).catch(() => undefined);
  await pushedBefore.pushImage('team/two', { tag: 'v2' });
  const catalog = await (await pushedBefore.fetch('/v2/_catalog')).json();
  await before.close();

  const database = await postgres.createDatabase();
  const from = await RegistryIndex.open(path.join(storageDir, 'index.db'));
  const to = await RegistryIndex.open(database);
  try {
    const report = await migrateIndex(from.sql, to.sql);
    expect(report).toMatchObject({ repositories: 2, tags: 2, manifests: 3 });
    // A second run into the same database refuses, leaving it as it is.
    await expect(migrateIndex(from.sql, to.sql)).rejects.toThrow(/not empty/);
    expect((await to.sql.get<{ count: number }>('SELECT count(*) AS count FROM manifests'))!.count).toBe(3);
  } finally {
    await from.close();
    await to.close();
  }

  const after = await createTestApp({ storageDir, overrides: { database } });
  try {
    const client = new RegistryClient(after);
    expect(await (await client.fetch('/v2/_catalog')).json()).toEqual(catalog);
    const { response, body } = await client.getManifest('team/one', 'v1');
    expect(response.status).toBe(200);
    expect(digestOf(body)).toBe(one.digest);
    for (const layer of one.layers) expect(digestOf((await client.getBlob('team/one', layer.digest)).body)).toBe(layer.digest);
    expect((await client.getManifest('team/two', two.digest, { method: 'HEAD' })).response.status).toBe(200);
    // A new repository takes an id after the copied ones.
    await client.pushImage('team/three', { tag: 'v1' });
    expect(((await (await client.fetch('/v2/_catalog')).json()) as { repositories: string[] }).repositories).toEqual(['team/one', 'team/three', 'team/two']);
  } finally {
    await after.close();
  }
});
