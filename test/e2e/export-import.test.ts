import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { buildArtifactLayout, buildImageLayout, buildMultiArchLayout, BuiltImage, BuiltMultiArchImage, findTag } from '../helpers/oci-image';
import { MAIN } from '../helpers/server-process';
import { skopeoCopy, skopeoInspect } from '../helpers/skopeo';
import { createTestApp, TestApp } from '../helpers/test-app';

const execFileAsync = promisify(execFile);

/**
 * `export --oci` / `--docker-archive` and `import`, through the built command line beside running servers,
 * checked with skopeo's oci:, oci-archive: and docker-archive: transports.
 */
describe('export and import across an air gap', () => {
  let work: string;
  let source: TestApp;
  let destination: TestApp;
  let multiArch: BuiltMultiArchImage;
  let single: BuiltImage;
  let signatureDigest: string;

  const cli = (app: TestApp, ...args: string[]) =>
    execFileAsync(process.execPath, [MAIN, ...args, '--log_level', 'silent'], { cwd: app.storageDir });
  const rows = async (app: TestApp, table: string) =>
    (await app.registry.index.sql.get<{ count: number }>(`SELECT count(*) AS count FROM ${table}`))!.count;

  beforeAll(async () => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'export-import-'));
    source = await createTestApp();
    destination = await createTestApp();
    multiArch = await buildMultiArchLayout(path.join(work, 'multi'), {
      tag: '1.0',
      platforms: [
        { os: 'linux', architecture: 'amd64' },
        { os: 'linux', architecture: 'arm64', variant: 'v8' },
      ],
      layers: 2,
      layerSize: 20_000,
    });
    await skopeoCopy(multiArch.reference, `docker://${source.host}/team/app:1.0`, ['--all']);
    const signature = await buildArtifactLayout(path.join(work, 'signature'), {
      tag: 'sig',
      artifactType: 'application/vnd.example.signature',
      files: [{ mediaType: 'application/vnd.example.signature.v1', content: 'signed' }],
      subject: { mediaType: multiArch.mediaType, digest: multiArch.manifestDigest, size: multiArch.manifestSize },
    });
    signatureDigest = signature.manifestDigest;
    await skopeoCopy(signature.reference, `docker://${source.host}/team/app@${signature.manifestDigest}`);
    single = await buildImageLayout(path.join(work, 'single'), { tag: '2', layers: 2, layerSize: 10_000, seed: 'single' });
    await skopeoCopy(single.reference, `docker://${source.host}/tools/one:2`);
  });
  afterAll(async () => {
    await source?.close();
    await destination?.close();
    fs.rmSync(work, { recursive: true, force: true });
  });

  test('export --oci FILE.tar is an oci-archive skopeo reads, the multi-arch index whole', async () => {
    const archive = path.join(work, 'app.tar');
    const { stdout } = await cli(source, 'export', '--oci', archive, '--repo', 'team/app');
    expect(stdout).toMatch(/exported 1 repositories, 1 tags, 4 manifests/);
    expect(await skopeoInspect(`oci-archive:${archive}:1.0`, { raw: true })).toBe(multiArch.manifest.toString());
    const copy = path.join(work, 'from-archive');
    await skopeoCopy(`oci-archive:${archive}:1.0`, `oci:${copy}:1.0`, ['--all']);
    expect((await findTag(copy, '1.0'))?.digest).toBe(multiArch.manifestDigest);
    // GNU tar agrees it is a well-formed archive.
    const { stdout: listing } = await execFileAsync('tar', ['-tf', archive]);
    expect(listing.split('\n')).toEqual(expect.arrayContaining(['oci-layout', 'index.json', `blobs/sha256/${signatureDigest.slice(7)}`]));
  });

  test('import of that archive into another running registry: same digests, referrers kept; twice changes nothing', async () => {
    const archive = path.join(work, 'app.tar');
    const first = await cli(destination, 'import', archive);
    expect(first.stdout).toContain(`team/app:1.0 ${multiArch.manifestDigest}`);
    expect(await skopeoInspect(`docker://${destination.host}/team/app:1.0`, { raw: true })).toBe(multiArch.manifest.toString());
    const arm = multiArch.images[1];
    expect(await skopeoInspect(`docker://${destination.host}/team/app@${arm.manifestDigest}`, { raw: true })).toBe(arm.manifest.toString());
    const referrers = await fetch(`${destination.url}/v2/team/app/referrers/${multiArch.manifestDigest}`);
    expect(((await referrers.json()) as { manifests: Array<{ digest: string }> }).manifests.map((entry) => entry.digest)).toEqual([signatureDigest]);

    const counts = await Promise.all(['manifests', 'tags', 'repository_blobs', 'manifest_references'].map((table) => rows(destination, table)));
    const blobFile = path.join(destination.config.registry_storage, 'blobs/sha256', arm.layerDigests[0].slice(7, 9), arm.layerDigests[0].slice(7));
    const before = fs.statSync(blobFile);
    const second = await cli(destination, 'import', archive);
    expect(second.stdout).toContain('nothing changed');
    expect(await Promise.all(['manifests', 'tags', 'repository_blobs', 'manifest_references'].map((table) => rows(destination, table)))).toEqual(counts);
    expect(fs.statSync(blobFile)).toMatchObject({ ino: before.ino, mtimeMs: before.mtimeMs });

    // What was imported is in use: a garbage collection with no grace period keeps all of it.
    await cli(destination, 'gc', '--gc.grace', '0');
    expect(await skopeoInspect(`docker://${destination.host}/team/app@${arm.manifestDigest}`, { raw: true })).toBe(arm.manifest.toString());
    expect(await Promise.all(['manifests', 'tags', 'repository_blobs', 'manifest_references'].map((table) => rows(destination, table)))).toEqual(counts);
  });

  test('export --oci DIR is an OCI layout; import --to NAME:TAG of a skopeo oci-archive', async () => {
    const dir = path.join(work, 'layout');
    await cli(source, 'export', '--oci', dir, '--repo', 'tools/one');
    expect((await skopeoInspect(`oci:${dir}:2`)).Digest).toBe(single.manifestDigest);

    const skopeoArchive = path.join(work, 'skopeo.tar');
    await skopeoCopy(single.reference, `oci-archive:${skopeoArchive}:2`);
    await cli(destination, 'import', skopeoArchive, '--to', 'elsewhere/one:latest');
    expect((await skopeoInspect(`docker://${destination.host}/elsewhere/one:latest`)).Digest).toBe(single.manifestDigest);
    // A directory works as well as a tar.
    await cli(destination, 'import', single.dir, '--to', 'fromdir/one');
    expect((await skopeoInspect(`docker://${destination.host}/fromdir/one:2`)).Digest).toBe(single.manifestDigest);
  });

  test('import of a docker-archive made by skopeo: the same image configuration, pullable', async () => {
    const archive = path.join(work, 'docker.tar');
    await skopeoCopy(single.reference, `docker-archive:${archive}:library/one:2`);
    const { stdout } = await cli(destination, 'import', archive);
    expect(stdout).toContain('docker save archive');
    const inspected = await skopeoInspect(`docker://${destination.host}/library/one:2`, { config: true });
    expect((inspected.rootfs as { diff_ids: string[] }).diff_ids).toEqual(single.diffIds);
    const copy = path.join(work, 'docker-pulled');
    await skopeoCopy(`docker://${destination.host}/library/one:2`, `oci:${copy}:2`);
    const again = await cli(destination, 'import', archive);
    expect(again.stdout).toContain('nothing changed');
  });

  test('export --docker-archive: skopeo reads each image (one platform of a multi-arch tag); import brings it back', async () => {
    const archive = path.join(work, 'save.tar');
    await cli(source, 'export', '--docker-archive', archive, '--platform', 'linux/arm64');
    const arm = multiArch.images[1];
    const armConfig = await skopeoInspect(`docker-archive:${archive}:team/app:1.0`, { config: true });
    expect((armConfig.rootfs as { diff_ids: string[] }).diff_ids).toEqual(arm.diffIds);
    expect(armConfig.architecture).toBe('arm64');
    const oneConfig = await skopeoInspect(`docker-archive:${archive}:tools/one:2`, { config: true });
    expect((oneConfig.rootfs as { diff_ids: string[] }).diff_ids).toEqual(single.diffIds);

    await cli(destination, 'import', archive, '--to', 'roundtrip/all');
    const copy = path.join(work, 'roundtrip');
    await skopeoCopy(`docker://${destination.host}/roundtrip/all:1.0`, `oci:${copy}:1.0`);
    const imported = await skopeoInspect(`oci:${copy}:1.0`, { config: true });
    expect(imported).toEqual(armConfig);
  });
});
