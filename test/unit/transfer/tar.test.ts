import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { readTar, TarWriter } from '../../../src/transfer/tar';

describe('the streaming tar writer and reader', () => {
  let work: string;
  beforeEach(() => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'tar-'));
  });
  afterEach(() => fs.rmSync(work, { recursive: true, force: true }));

  test('names past ustar\'s 100 bytes (prefix field, then pax) are what GNU tar and the reader see', async () => {
    const names = ['short', `${'d'.repeat(120)}/file`, `${'x'.repeat(230)}`];
    const archive = path.join(work, 'names.tar');
    const source = path.join(work, 'source');
    fs.writeFileSync(source, Buffer.alloc(1500, 7));
    const tar = await TarWriter.create(archive);
    await tar.addFile(names[0], Buffer.from('hello'), 5);
    await tar.addFile(names[1], source, 1500);
    await tar.addFile(names[2], Buffer.alloc(0), 0);
    await tar.finish();

    expect(execFileSync('tar', ['-tf', archive], { encoding: 'utf8' }).trim().split('\n')).toEqual(names);
    const read: Array<{ name: string; bytes: number }> = [];
    for await (const entry of readTar(fs.createReadStream(archive, { highWaterMark: 100 }))) {
      let bytes = 0;
      for await (const chunk of entry.body) bytes += chunk.length;
      read.push({ name: entry.name, bytes });
    }
    expect(read).toEqual([
      { name: names[0], bytes: 5 },
      { name: names[1], bytes: 1500 },
      { name: names[2], bytes: 0 },
    ]);
  });

  test('a file shorter than it was announced is an error, not a short entry', async () => {
    const tar = await TarWriter.create(path.join(work, 'short.tar'));
    await expect(tar.addFile('claims-10', Buffer.from('abc'), 10)).rejects.toThrow('claims-10: expected 10 bytes, read 3');
    await tar.abort();
  });

  test('entries the reader leaves unread are skipped; GNU tar archives read entry by entry', async () => {
    fs.mkdirSync(path.join(work, 'tree/sub'), { recursive: true });
    fs.writeFileSync(path.join(work, 'tree/sub/a'), 'a'.repeat(700));
    fs.writeFileSync(path.join(work, 'tree/b'), 'b');
    const archive = path.join(work, 'gnu.tar');
    execFileSync('tar', ['-cf', archive, '-C', path.join(work, 'tree'), 'sub', 'b']);
    const seen: string[] = [];
    for await (const entry of readTar(fs.createReadStream(archive))) seen.push(`${entry.type}:${entry.name}:${entry.size}`);
    expect(seen).toEqual(['directory:sub/:0', 'file:sub/a:700', 'file:b:1']);
  });
});
