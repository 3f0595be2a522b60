import {
  createDigester,
  digestAlgorithm,
  digestOf,
  isDigestReference,
  looksLikeDigest,
  parseDigest,
  toDigest,
  toManifestReference,
} from '../../../src/oci/digest';
import { RegistryError } from '../../../src/oci/errors';

const SHA256_EMPTY = 'sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
const SHA512_EMPTY =
  'sha512:cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e';

describe('parseDigest', () => {
  test('accepts sha256 and sha512 with lowercase hex of the right length', () => {
    expect(parseDigest(SHA256_EMPTY)).toEqual({ algorithm: 'sha256', hex: SHA256_EMPTY.slice(7), digest: SHA256_EMPTY });
    expect(parseDigest(SHA512_EMPTY)).toEqual({ algorithm: 'sha512', hex: SHA512_EMPTY.slice(7), digest: SHA512_EMPTY });
  });

  test.each([
    ['sha256 one hex short', SHA256_EMPTY.slice(0, -1)],
    ['sha256 one hex long', `${SHA256_EMPTY}0`],
    ['sha512 with a sha256-length hex', `sha512:${SHA256_EMPTY.slice(7)}`],
    ['sha256 with a sha512-length hex', `sha256:${SHA512_EMPTY.slice(7)}`],
    ['empty hex', 'sha256:'],
  ])('rejects the wrong length: %s', (_, value) => {
    expect(parseDigest(value)).toBeNull();
  });

  test('rejects uppercase hex (digests are compared as strings)', () => {
    expect(parseDigest(SHA256_EMPTY.toUpperCase())).toBeNull();
    expect(parseDigest(`sha256:${SHA256_EMPTY.slice(7).toUpperCase()}`)).toBeNull();
  });

  test.each([
    'md5:d41d8cd98f00b204e9800998ecf8427e',
    'sha384:38b060a751ac96384cd9327eb1b1e36a21fdb71114be07434c0cc7bf63f6e1da274edebfe76f65fbd51ad2f14898b95b',
    'SHA256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
    'sha256+b64u:47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU',
    'blake3:af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262',
  ])('rejects an unsupported algorithm: %s', (value) => {
    expect(parseDigest(value)).toBeNull();
  });

  // Digests become file names in the blob store: nothing path-like may get through.
  test.each([
    'sha256:../../etc/passwd',
    'sha256:../../../../../../../../../../../../../../../../../../../../etc/passwd',
    '../sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
    'sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85/',
    'sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b78/../5',
    'sha256/../../e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
    'sha256:%2e%2e%2fetc%2fpasswd',
  ])('rejects a traversal attempt: %s', (value) => {
    expect(parseDigest(value)).toBeNull();
  });

  test.each([
    ['no algorithm', ':e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'],
    ['no colon', 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'],
    ['a tag', 'latest'],
    ['the empty string', ''],
    ['leading space', ` ${SHA256_EMPTY}`],
    ['trailing newline', `${SHA256_EMPTY}\n`],
    ['two colons', `sha256:${SHA256_EMPTY}`],
  ])('rejects a malformed digest: %s', (_, value) => {
    expect(parseDigest(value)).toBeNull();
  });
});

describe('digestOf and createDigester', () => {
  test('compute the canonical algorithm:hex string', () => {
    expect(digestOf('')).toBe(SHA256_EMPTY);
    expect(digestOf(Buffer.alloc(0), 'sha512')).toBe(SHA512_EMPTY);
  });

  test('streaming through createDigester gives the same digest as digestOf', () => {
    const content = Buffer.from('{"schemaVersion":2}');
    const digester = createDigester();
    digester.update(content.subarray(0, 5));
    digester.update(content.subarray(5));
    expect(`sha256:${digester.digest('hex')}`).toBe(digestOf(content));
  });

  test('a computed digest always parses', () => {
    expect(parseDigest(digestOf('x'))).not.toBeNull();
    expect(parseDigest(digestOf('x', 'sha512'))).not.toBeNull();
  });
});

describe('looksLikeDigest', () => {
  test('tells digests from tags (a tag cannot contain a colon)', () => {
    expect(looksLikeDigest(SHA256_EMPTY)).toBe(true);
    expect(looksLikeDigest('sha256:short')).toBe(true);
    expect(looksLikeDigest('latest')).toBe(false);
    expect(looksLikeDigest('v1.2.3_sha256-abc')).toBe(false);
  });
});

describe('toDigest and toManifestReference: a digest parsed once, at the edge', () => {
  const sha256 = `sha256:${'a'.repeat(64)}`;
  const sha512 = `sha512:${'b'.repeat(128)}`;

  it('returns a valid digest as a Digest whose algorithm is read without parsing again', () => {
    expect(digestAlgorithm(toDigest(sha256))).toBe('sha256');
    expect(digestAlgorithm(toDigest(sha512))).toBe('sha512');
  });

  it.each(['sha256:abc', `sha256:${'A'.repeat(64)}`, `md5:${'a'.repeat(32)}`, 'latest', ''])('refuses %j with DIGEST_INVALID', (value) => {
    let thrown: unknown;
    try {
      toDigest(value);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(RegistryError);
    expect((thrown as RegistryError).code).toBe('DIGEST_INVALID');
  });

  it('tells a digest reference from a tag, refusing a malformed digest', () => {
    expect(isDigestReference(toManifestReference(sha256))).toBe(true);
    expect(isDigestReference(toManifestReference('v1.2'))).toBe(false);
    // Not a valid tag either: the operation decides (MANIFEST_UNKNOWN for a GET, TAG_INVALID for a PUT).
    expect(isDigestReference(toManifestReference('-bad'))).toBe(false);
    expect(() => toManifestReference('sha256:short')).toThrow(RegistryError);
  });
});
