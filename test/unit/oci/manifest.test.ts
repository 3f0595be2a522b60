import { Descriptor, ManifestParseError, isForeignLayer, parseManifest } from '../../../src/oci/manifest';
import { digestOf } from '../../../src/oci/digest';
import { MediaType } from '../../../src/oci/media-types';

const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json';
const OCI_LAYER = 'application/vnd.oci.image.layer.v1.tar+gzip';
const DOCKER_CONFIG = 'application/vnd.docker.container.image.v1+json';
const DOCKER_LAYER = 'application/vnd.docker.image.rootfs.diff.tar.gzip';
const DOCKER_FOREIGN_LAYER = 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip';

function descriptor(mediaType: string, content: string, extra: Partial<Descriptor> = {}): Descriptor {
  return { mediaType, digest: digestOf(content), size: Buffer.byteLength(content), ...extra };
}

const config = descriptor(OCI_CONFIG, '{"architecture":"amd64","os":"linux"}');
const layer1 = descriptor(OCI_LAYER, 'layer one');
const layer2 = descriptor(OCI_LAYER, 'layer two');

function bytes(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value));
}

function ociManifest(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { schemaVersion: 2, mediaType: MediaType.OciManifest, config, layers: [layer1, layer2], ...extra };
}

function expectRefused(content: Buffer, contentType: string | undefined, message: RegExp): void {
  let error: unknown;
  try {
    parseManifest(content, contentType);
  } catch (caught) {
    error = caught;
  }
  expect(error).toBeInstanceOf(ManifestParseError);
  expect((error as Error).message).toMatch(message);
}

describe('parseManifest: image manifests', () => {
  test('an OCI image manifest needs its config and layers; the config media type is its artifactType', () => {
    const parsed = parseManifest(bytes(ociManifest({ annotations: { 'org.example': 'x' } })), MediaType.OciManifest);
    expect(parsed).toEqual({
      mediaType: MediaType.OciManifest,
      blobs: [config, layer1, layer2],
      manifests: [],
      subject: undefined,
      artifactType: OCI_CONFIG,
      annotations: { 'org.example': 'x' },
    });
  });

  test('a Docker schema 2 manifest', () => {
    const dockerConfig = descriptor(DOCKER_CONFIG, '{}');
    const dockerLayer = descriptor(DOCKER_LAYER, 'layer');
    const manifest = { schemaVersion: 2, mediaType: MediaType.DockerManifest, config: dockerConfig, layers: [dockerLayer] };
    const parsed = parseManifest(bytes(manifest), MediaType.DockerManifest);
    expect(parsed.mediaType).toBe(MediaType.DockerManifest);
    expect(parsed.blobs).toEqual([dockerConfig, dockerLayer]);
    expect(parsed.manifests).toEqual([]);
  });

  test('a manifest with no layers is valid', () => {
    expect(parseManifest(bytes(ociManifest({ layers: [] }))).blobs).toEqual([config]);
  });

  test('without a mediaType field, the Content-Type names it', () => {
    const { mediaType: _, ...manifest } = ociManifest();
    expect(parseManifest(bytes(manifest), MediaType.OciManifest).mediaType).toBe(MediaType.OciManifest);
    expect(parseManifest(bytes(manifest), MediaType.DockerManifest).mediaType).toBe(MediaType.DockerManifest);
  });

  test('without a mediaType field or a manifest Content-Type, the shape names it (image-spec: mediaType is optional)', () => {
    const { mediaType: _, ...manifest } = ociManifest();
    expect(parseManifest(bytes(manifest)).mediaType).toBe(MediaType.OciManifest);
    expect(parseManifest(bytes(manifest), 'application/json').mediaType).toBe(MediaType.OciManifest);
  });

  test('keeps descriptor fields the registry serves back: annotations, urls, artifactType', () => {
    const annotated = descriptor(OCI_LAYER, 'annotated', {
      annotations: { 'org.opencontainers.image.title': 'file.txt' },
      urls: ['https://example.com/blob'],
    });
    const parsed = parseManifest(bytes(ociManifest({ layers: [annotated] })));
    expect(parsed.blobs[1]).toEqual(annotated);
  });
});

describe('parseManifest: indexes', () => {
  const amd64 = descriptor(MediaType.OciManifest, 'amd64 manifest', { platform: { os: 'linux', architecture: 'amd64' } });
  const arm64 = descriptor(MediaType.OciManifest, 'arm64 manifest', {
    platform: { os: 'linux', architecture: 'arm64', variant: 'v8' },
  });

  test('an OCI index lists child manifests and no blobs', () => {
    const parsed = parseManifest(
      bytes({ schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: [amd64, arm64] }),
      MediaType.OciIndex,
    );
    expect(parsed).toEqual({
      mediaType: MediaType.OciIndex,
      blobs: [],
      manifests: [amd64, arm64],
      subject: undefined,
      artifactType: undefined,
      annotations: undefined,
    });
  });

  test('a Docker manifest list', () => {
    const child = descriptor(MediaType.DockerManifest, 'child', { platform: { os: 'linux', architecture: 'amd64' } });
    const parsed = parseManifest(
      bytes({ schemaVersion: 2, mediaType: MediaType.DockerManifestList, manifests: [child] }),
      MediaType.DockerManifestList,
    );
    expect(parsed.mediaType).toBe(MediaType.DockerManifestList);
    expect(parsed.manifests).toEqual([child]);
    expect(parsed.blobs).toEqual([]);
  });

  test('an index without a mediaType field is recognised by its manifests array', () => {
    expect(parseManifest(bytes({ schemaVersion: 2, manifests: [amd64] })).mediaType).toBe(MediaType.OciIndex);
  });

  test('an empty index is valid', () => {
    expect(parseManifest(bytes({ schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: [] })).manifests).toEqual([]);
  });

  test('an index may be an artifact with a subject', () => {
    const subject = descriptor(MediaType.OciManifest, 'subject');
    const parsed = parseManifest(
      bytes({ schemaVersion: 2, mediaType: MediaType.OciIndex, artifactType: 'application/vnd.example.sbom', manifests: [amd64], subject }),
    );
    expect(parsed.artifactType).toBe('application/vnd.example.sbom');
    expect(parsed.subject).toEqual(subject);
  });
});

describe('parseManifest: artifacts (dist-spec referrers)', () => {
  const emptyConfig = { mediaType: MediaType.OciEmpty, digest: digestOf('{}'), size: 2 };
  const subject = descriptor(MediaType.OciManifest, 'the signed image');

  test('artifactType and subject are reported', () => {
    const signature = descriptor('application/vnd.example.signature.v1', 'signature');
    const parsed = parseManifest(
      bytes({
        schemaVersion: 2,
        mediaType: MediaType.OciManifest,
        artifactType: 'application/vnd.example.signature',
        config: emptyConfig,
        layers: [signature],
        subject,
        annotations: { 'org.opencontainers.image.created': '2024-01-01T00:00:00Z' },
      }),
      MediaType.OciManifest,
    );
    expect(parsed.artifactType).toBe('application/vnd.example.signature');
    expect(parsed.subject).toEqual(subject);
    expect(parsed.blobs).toEqual([emptyConfig, signature]);
    expect(parsed.annotations).toEqual({ 'org.opencontainers.image.created': '2024-01-01T00:00:00Z' });
  });

  test('without artifactType, the config media type is the artifact type', () => {
    const sbomConfig = descriptor('application/vnd.example.sbom.config.v1+json', '{}');
    const parsed = parseManifest(bytes(ociManifest({ config: sbomConfig, layers: [], subject })));
    expect(parsed.artifactType).toBe('application/vnd.example.sbom.config.v1+json');
    expect(parsed.subject).toEqual(subject);
  });
});

describe('parseManifest: mediaType and Content-Type', () => {
  test('a Content-Type with parameters or in another case still matches', () => {
    const manifest = bytes(ociManifest());
    expect(parseManifest(manifest, `${MediaType.OciManifest}; charset=utf-8`).mediaType).toBe(MediaType.OciManifest);
    expect(parseManifest(manifest, MediaType.OciManifest.toUpperCase()).mediaType).toBe(MediaType.OciManifest);
  });

  test('a Content-Type naming another manifest type than the body is refused', () => {
    expectRefused(bytes(ociManifest()), MediaType.OciIndex, /does not match Content-Type/);
    expectRefused(bytes(ociManifest()), MediaType.DockerManifest, /does not match Content-Type/);
    expectRefused(
      bytes({ schemaVersion: 2, mediaType: MediaType.DockerManifestList, manifests: [] }),
      MediaType.OciIndex,
      /does not match Content-Type/,
    );
  });

  test('a generic Content-Type defers to the declared mediaType', () => {
    expect(parseManifest(bytes(ociManifest()), 'application/json').mediaType).toBe(MediaType.OciManifest);
    expect(parseManifest(bytes(ociManifest()), 'application/octet-stream').mediaType).toBe(MediaType.OciManifest);
  });

  test('a declared mediaType that is not a manifest type is refused', () => {
    expectRefused(bytes(ociManifest({ mediaType: OCI_CONFIG })), undefined, /unsupported manifest media type/);
    expectRefused(bytes(ociManifest({ mediaType: 'text/plain' })), 'text/plain', /unsupported manifest media type/);
  });

  test('a Content-Type naming an index cannot turn an image manifest body into an index', () => {
    const { mediaType: _, ...manifest } = ociManifest();
    expectRefused(bytes(manifest), MediaType.OciIndex, /manifests array/);
  });
});

describe('parseManifest: refused documents', () => {
  test.each([
    ['not JSON', '{"schemaVersion":2,', /not valid JSON/],
    ['empty', '', /not valid JSON/],
    ['a JSON array', '[]', /not a JSON object/],
    ['JSON null', 'null', /not a JSON object/],
    ['a JSON string', '"manifest"', /not a JSON object/],
    ['a JSON number', '2', /not a JSON object/],
  ])('%s', (_, content, message) => {
    expectRefused(Buffer.from(content), MediaType.OciManifest, message);
  });

  test('Docker schema 1 is refused, declared in the body or in the Content-Type', () => {
    expectRefused(
      bytes({ schemaVersion: 1, mediaType: MediaType.DockerManifestV1Signed, name: 'a', tag: 'b', fsLayers: [] }),
      undefined,
      /schema 1/,
    );
    expectRefused(bytes({ schemaVersion: 1, mediaType: MediaType.DockerManifestV1 }), undefined, /schema 1/);
    // A real schema 1 manifest has no mediaType field: only its Content-Type says what it is,
    // and it has neither config nor manifests, so it is refused whichever check fires first.
    const schema1 = bytes({ schemaVersion: 1, name: 'library/alpine', tag: '3', architecture: 'amd64', fsLayers: [], history: [], signatures: [] });
    expectRefused(schema1, MediaType.DockerManifestV1Signed, /./);
    expectRefused(schema1, MediaType.DockerManifestV1, /./);
  });

  test.each([
    ['missing', undefined],
    ['1', 1],
    ['3', 3],
    ['a string', '2'],
  ])('schemaVersion %s is refused', (_, schemaVersion) => {
    expectRefused(bytes(ociManifest({ schemaVersion })), MediaType.OciManifest, /schemaVersion must be 2/);
  });

  test('a body that is neither a manifest nor an index, with no mediaType, is refused', () => {
    expectRefused(bytes({ schemaVersion: 2, layers: [] }), undefined, /no mediaType/);
  });

  test('an image manifest needs a config and a layers array; an index a manifests array', () => {
    expectRefused(bytes(ociManifest({ config: undefined })), undefined, /config is not a descriptor/);
    expectRefused(bytes(ociManifest({ layers: undefined })), undefined, /layers array/);
    expectRefused(bytes(ociManifest({ layers: {} })), undefined, /layers array/);
    expectRefused(bytes({ schemaVersion: 2, mediaType: MediaType.OciIndex }), undefined, /manifests array/);
    expectRefused(bytes({ schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: {} }), undefined, /manifests array/);
  });

  test('annotations and artifactType must be strings', () => {
    expectRefused(bytes(ociManifest({ annotations: { a: 1 } })), undefined, /annotations must map strings to strings/);
    expectRefused(bytes(ociManifest({ annotations: ['a'] })), undefined, /annotations must map strings to strings/);
    expectRefused(bytes(ociManifest({ artifactType: 7 })), undefined, /artifactType must be a string/);
  });
});

describe('parseManifest: bad descriptors', () => {
  test.each([
    ['not an object', 'sha256:abc', /layers\[0\] is not a descriptor/],
    ['null', null, /layers\[0\] is not a descriptor/],
    ['an array', [], /layers\[0\] is not a descriptor/],
    ['no mediaType', { digest: layer1.digest, size: 1 }, /layers\[0\]\.mediaType is missing/],
    ['an empty mediaType', { ...layer1, mediaType: '' }, /layers\[0\]\.mediaType is missing/],
    ['no digest', { mediaType: OCI_LAYER, size: 1 }, /layers\[0\]\.digest is not a valid digest/],
    ['a traversal digest', { ...layer1, digest: 'sha256:../../etc/passwd' }, /layers\[0\]\.digest/],
    ['an uppercase digest', { ...layer1, digest: layer1.digest.toUpperCase() }, /layers\[0\]\.digest/],
    ['an unsupported algorithm', { ...layer1, digest: 'md5:d41d8cd98f00b204e9800998ecf8427e' }, /layers\[0\]\.digest/],
    ['no size', { mediaType: OCI_LAYER, digest: layer1.digest }, /layers\[0\]\.size/],
    ['a negative size', { ...layer1, size: -1 }, /layers\[0\]\.size/],
    ['a fractional size', { ...layer1, size: 1.5 }, /layers\[0\]\.size/],
    ['a string size', { ...layer1, size: '9' }, /layers\[0\]\.size/],
    ['an unsafe integer size', { ...layer1, size: 2 ** 53 }, /layers\[0\]\.size/],
    ['non-string annotations', { ...layer1, annotations: { a: true } }, /layers\[0\]\.annotations/],
    ['a non-string artifactType', { ...layer1, artifactType: {} }, /layers\[0\]\.artifactType/],
  ])('a layer with %s', (_, layer, message) => {
    expectRefused(bytes(ociManifest({ layers: [layer] })), MediaType.OciManifest, message);
  });

  test('the config, index entries and subject are checked the same way', () => {
    expectRefused(bytes(ociManifest({ config: { ...config, size: -1 } })), undefined, /config\.size/);
    expectRefused(
      bytes({ schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: [{ mediaType: MediaType.OciManifest, size: 1 }] }),
      undefined,
      /manifests\[0\]\.digest/,
    );
    expectRefused(bytes(ociManifest({ subject: { mediaType: MediaType.OciManifest } })), undefined, /subject\.digest/);
    expectRefused(bytes(ociManifest({ subject: null })), undefined, /subject is not a descriptor/);
  });

  test('the second bad layer is named by its index', () => {
    expectRefused(bytes(ociManifest({ layers: [layer1, { ...layer2, size: -2 }] })), undefined, /layers\[1\]\.size/);
  });
});

describe('foreign layers', () => {
  const foreign = descriptor(DOCKER_FOREIGN_LAYER, 'windows base', { urls: ['https://mcr.microsoft.com/blob'] });
  const nondistributable = descriptor('application/vnd.oci.image.layer.nondistributable.v1.tar+gzip', 'nd', {
    urls: ['https://example.com/nd'],
  });

  test('layers fetched from their urls are not blobs the registry must hold', () => {
    const parsed = parseManifest(bytes(ociManifest({ layers: [foreign, layer1, nondistributable] })));
    expect(parsed.blobs).toEqual([config, layer1]);
  });

  test('a foreign media type without urls is an ordinary blob', () => {
    const withoutUrls = descriptor(DOCKER_FOREIGN_LAYER, 'no urls');
    expect(isForeignLayer(withoutUrls)).toBe(false);
    expect(parseManifest(bytes(ociManifest({ layers: [withoutUrls] }))).blobs).toEqual([config, withoutUrls]);
  });

  test('urls alone do not make a layer foreign', () => {
    const ordinary = descriptor(OCI_LAYER, 'mirrored', { urls: ['https://example.com/mirror'] });
    expect(isForeignLayer(ordinary)).toBe(false);
    expect(isForeignLayer(foreign)).toBe(true);
    expect(isForeignLayer(nondistributable)).toBe(true);
  });
});
