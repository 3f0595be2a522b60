import type { SqlQueries } from './database/sql-database';

/**
 * The tables an index holds, parents before children (foreign keys), with the identity column whose
 * sequence must continue after the copied ids. Left out: what lives only while a process runs
 * (blob_removals of a collection under way, leases).
 */
const TABLES: ReadonlyArray<{ name: string; identity?: string }> = [
  { name: 'repositories', identity: 'id' },
  { name: 'blobs' },
  { name: 'repository_blobs' },
  { name: 'manifests' },
  { name: 'manifest_references' },
  { name: 'tags' },
  { name: 'upstream_tag_lists' },
  { name: 'upstream_referrers' },
  { name: 'github_rest_cache' },
  { name: 'uploads' },
  { name: 'upload_parts' },
  { name: 'storage_samples' },
  { name: 'gc_runs', identity: 'id' },
  { name: 'pins', identity: 'id' },
];

/** Rows read from the source at a time, and rows per INSERT into the target. */
const READ_BATCH = 5_000;
const INSERT_BATCH = 200;

export type IndexMigrationReport = Record<string, number>;

/** Why a copy was refused (a target that holds rows already); said as it is, without a stack. */
export class IndexMigrationError extends Error {}

/**
 * Copies a single-node registry's SQLite index into an empty PostgreSQL one (`registry migrate-index`),
 * both already at this server's schema version: every row as it is, ids included, in one transaction, so
 * a failed copy leaves the target empty for the next try. The blobs are not touched (migrate-storage).
 */
export async function migrateIndex(
  from: SqlQueries,
  to: SqlQueries,
  progress: (line: string) => void = () => undefined,
): Promise<IndexMigrationReport> {
  const report: IndexMigrationReport = {};
  await to.transaction(async (target) => {
    for (const table of TABLES) {
      if ((await target.get(`SELECT 1 AS held FROM ${table.name} LIMIT 1`)) !== undefined) {
        throw new IndexMigrationError(`the target index is not empty (${table.name} has rows): migrate-index copies into a new database only`);
      }
    }
    for (const table of TABLES) {
      let copied = 0;
      for (let offset = 0; ; offset += READ_BATCH) {
        // By rowid or primary key order is not needed: every row goes, and each table's parents are in already.
        const rows = await from.all<Record<string, unknown>>(`SELECT * FROM ${table.name} LIMIT @limit OFFSET @offset`, {
          limit: READ_BATCH,
          offset,
        });
        for (let start = 0; start < rows.length; start += INSERT_BATCH) {
          await insertRows(target, table.name, rows.slice(start, start + INSERT_BATCH));
        }
        copied += rows.length;
        if (rows.length < READ_BATCH) break;
        progress(`${table.name}: ${copied} rows`);
      }
      if (table.identity && copied > 0) {
        // New rows continue after the copied ids (identity columns do not look at explicit values).
        await target.get(
          `SELECT setval(pg_get_serial_sequence('${table.name}', '${table.identity}'), (SELECT max(${table.identity}) FROM ${table.name}))`,
        );
      }
      report[table.name] = copied;
    }
  });
  return report;
}

async function insertRows(target: SqlQueries, table: string, rows: Array<Record<string, unknown>>): Promise<void> {
  if (rows.length === 0) return;
  const columns = Object.keys(rows[0]);
  const params: Record<string, unknown> = {};
  const tuples = rows.map((row, r) => {
    const names = columns.map((column, c) => {
      params[`v${r}_${c}`] = row[column];
      return `@v${r}_${c}`;
    });
    return `(${names.join(', ')})`;
  });
  await target.run(`INSERT INTO ${table} (${columns.join(', ')}) VALUES ${tuples.join(', ')}`, params);
}
