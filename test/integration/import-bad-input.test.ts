import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ensureStorageDirectories, loadConfig } from '../../src/config/load-config';
import { TransferError } from '../../src/transfer/errors';
import { importImages } from '../../src/transfer/import';
import { StoredContent } from '../../src/transfer/stored-content';
import { buildImageLayout, layoutBlobPath } from '../helpers/oci-image';

/**
 * `import` refuses bad input with an error naming the entry, and leaves nothing of it in the index:
 * no repository, manifest, tag or blob link.
 */
describe('import of bad input', () => {
  let work: string;
  let content: StoredContent;

  beforeEach(async () => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'import-bad-'));
    const config = loadConfig({ cwd: work, env: {}, overrides: { log_level: 'silent' } });
    ensureStorageDirectories(config);
    content = await StoredContent.open(config);
  });
  afterEach(async () => {
    await content.close();
    fs.rmSync(work, { recursive: true, force: true });
  });

  const indexRows = async () => {
    const rows: Record<string, number> = {};
    for (const table of ['repositories', 'manifests', 'tags', 'repository_blobs', 'manifest_references']) {
      rows[table] = (await content.index.sql.get<{ count: number }>(`SELECT count(*) AS count FROM ${table}`))!.count;
    }
    return rows;
  };
  const empty = { repositories: 0, manifests: 0, tags: 0, repository_blobs: 0, manifest_references: 0 };

  async function expectRefused(source: string, message: RegExp, to?: string): Promise<void> {
    const attempt = importImages(content, { source, to });
    await expect(attempt).rejects.toBeInstanceOf(TransferError);
    await expect(importImages(content, { source, to })).rejects.toThrow(message);
    expect(await indexRows()).toEqual(empty);
  }

  /** A tar written block by block, so it can hold what a careful writer would not: hostile names and links. */
  function makeTar(file: string, entries: Array<{ name: string; content?: string; symlink?: string }>): string {
    const blocks: Buffer[] = [];
    for (const entry of entries) {
      const data = Buffer.from(entry.content ?? '');
      const header = Buffer.alloc(512);
      header.write(entry.name, 0, 100);
      header.write('0000644\0', 100);
      header.write(`${data.length.toString(8).padStart(11, '0')}\0`, 124);
      header.write(' '.repeat(8), 148);
      header.write(entry.symlink === undefined ? '0' : '2', 156);
      if (entry.symlink !== undefined) header.write(entry.symlink, 157, 100);
      header.write('ustar\x0000', 257);
      const sum = header.reduce((total, byte) => total + byte, 0);
      header.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
      blocks.push(header, data, Buffer.alloc((512 - (data.length % 512)) % 512));
    }
    fs.writeFileSync(file, Buffer.concat([...blocks, Buffer.alloc(1024)]));
    // GNU tar reads it as written: the test is about the names, not a malformed archive.
    expect(execFileSync('tar', ['-tf', file, '-P'], { encoding: 'utf8' }).trim().split('\n')).toEqual(entries.map((entry) => entry.name));
    return file;
  }

  test('an entry whose path climbs out of the archive (../)', async () => {
    const archive = makeTar(path.join(work, 'climb.tar'), [
      { name: 'oci-layout', content: '{"imageLayoutVersion":"1.0.0"}' },
      { name: 'blobs/../../evil', content: 'x' },
    ]);
    await expectRefused(archive, /blobs\/\.\.\/\.\.\/evil: a path outside the archive's root/);
    expect(fs.existsSync(path.join(work, 'evil'))).toBe(false);
  });

  test('an absolute path', async () => {
    const archive = makeTar(path.join(work, 'absolute.tar'), [{ name: '/tmp/evil-absolute', content: 'x' }]);
    await expectRefused(archive, /\/tmp\/evil-absolute: a path outside the archive's root/);
  });

  test('a symbolic link that escapes the root', async () => {
    const archive = makeTar(path.join(work, 'symlink.tar'), [
      { name: 'index.json', content: '{"schemaVersion":2,"manifests":[]}' },
      { name: 'blobs/sha256/escape', symlink: '../../../etc/passwd' },
    ]);
    await expectRefused(archive, /blobs\/sha256\/escape: a path outside the archive's root \(\.\.\/etc\/passwd\)/);
    const absolute = makeTar(path.join(work, 'symlink-absolute.tar'), [{ name: 'layer.tar', symlink: '/etc/passwd' }]);
    await expectRefused(absolute, /layer\.tar: a symbolic link to \/etc\/passwd, outside the archive/);
  });

  test('a blob whose content does not hash to its name', async () => {
    const image = await buildImageLayout(path.join(work, 'layout'), { tag: 'v1', layers: 2, layerSize: 1000 });
    fs.appendFileSync(layoutBlobPath(image.dir, image.layerDigests[1]), 'tampered');
    await expectRefused(image.dir, new RegExp(`blobs/sha256/${image.layerDigests[1].slice(7)}: its content hashes to sha256:[a-f0-9]{64}, not to the digest its name says`), 'app');
  });

  test('a manifest naming a blob the archive lacks: none of the archive\'s images is imported', async () => {
    const dir = path.join(work, 'two');
    await buildImageLayout(dir, { tag: 'good', layers: 1, layerSize: 1000, seed: 'good' });
    const broken = await buildImageLayout(dir, { tag: 'broken', layers: 1, layerSize: 1000, seed: 'broken' });
    fs.rmSync(layoutBlobPath(dir, broken.layerDigests[0]));
    await expectRefused(dir, new RegExp(`references blob ${broken.layerDigests[0]}, which the archive does not contain`), 'app');
  });

  test('a truncated archive', async () => {
    const image = await buildImageLayout(path.join(work, 'layout'), { tag: 'v1', layers: 1, layerSize: 50_000 });
    const archive = path.join(work, 'whole.tar');
    execFileSync('tar', ['-cf', archive, '-C', image.dir, '.']);
    const truncated = path.join(work, 'truncated.tar');
    fs.writeFileSync(truncated, fs.readFileSync(archive).subarray(0, Math.floor(fs.statSync(archive).size / 2)));
    await expectRefused(truncated, /truncated archive: .+ ends after \d+ of its \d+ bytes/, 'app');
    // The whole one imports: the refusal was the truncation.
    await importImages(content, { source: archive, to: 'app' });
    expect(await content.index.resolveTag('app', 'v1')).toBe(image.manifestDigest);
  });
});
