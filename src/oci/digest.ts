import { createHash, Hash } from 'node:crypto';
import { RegistryError } from './errors';

/** Digest algorithms this registry stores and verifies (dist-spec: sha256 required, sha512 optional). */
export type DigestAlgorithm = 'sha256' | 'sha512';

const HEX_LENGTH: Record<DigestAlgorithm, number> = { sha256: 64, sha512: 128 };

// image-spec descriptor grammar: algorithm ":" encoded
const DIGEST_GRAMMAR = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;

declare const VALIDATED: unique symbol;

/**
 * A digest this registry supports (`sha256:<64 hex>` or `sha512:<128 hex>`), checked once where it entered:
 * a route's parameter (`toDigest`) or a parsed manifest. Code that takes a Digest does not check it again.
 */
export type Digest = string & { readonly [VALIDATED]: 'digest' };

/** A reference that is not a digest: a tag, whose grammar each operation checks with its own error. */
export type TagReference = string & { readonly [VALIDATED]: 'tag' };

/** A manifests route's `<reference>`, told apart once (`toManifestReference`). */
export type ManifestReference = Digest | TagReference;

export interface ParsedDigest {
  algorithm: DigestAlgorithm;
  hex: string;
  /** The canonical `algorithm:hex` string. */
  digest: Digest;
}

/** Returns the parsed digest, or null when the string is not a digest this registry supports. */
export function parseDigest(value: string): ParsedDigest | null {
  if (!DIGEST_GRAMMAR.test(value)) return null;
  const colon = value.indexOf(':');
  const algorithm = value.slice(0, colon);
  const hex = value.slice(colon + 1);
  if (algorithm !== 'sha256' && algorithm !== 'sha512') return null;
  if (hex.length !== HEX_LENGTH[algorithm] || !/^[a-f0-9]+$/.test(hex)) return null;
  return { algorithm, hex, digest: value as Digest };
}

/** `value` as a Digest; DIGEST_INVALID (the spec's error for a malformed digest) when it is not one. */
export function toDigest(value: string): Digest {
  const parsed = parseDigest(value);
  if (parsed === null) throw new RegistryError('DIGEST_INVALID', { message: 'invalid digest', detail: { digest: value } });
  return parsed.digest;
}

/**
 * A manifests route's `<reference>`: a digest when it has the shape of one (then it must be valid:
 * DIGEST_INVALID), otherwise a tag, which each operation checks with its own error (a GET of a tag that
 * cannot exist is MANIFEST_UNKNOWN, a PUT to it TAG_INVALID).
 */
export function toManifestReference(value: string): ManifestReference {
  return looksLikeDigest(value) ? toDigest(value) : (value as TagReference);
}

/** True for the digest form of a reference: a tag never holds ':' (dist-spec tag grammar). */
export function isDigestReference(reference: ManifestReference | Digest): reference is Digest {
  return reference.includes(':');
}

/** The algorithm of a validated digest, without parsing it again. */
export function digestAlgorithm(digest: Digest): DigestAlgorithm {
  return digest.startsWith('sha512:') ? 'sha512' : 'sha256';
}

/** True when the string has the shape of a digest at all (used to tell tags from digests). */
export function looksLikeDigest(value: string): boolean {
  return value.includes(':');
}

export function createDigester(algorithm: DigestAlgorithm = 'sha256'): Hash {
  return createHash(algorithm);
}

export function digestOf(content: Buffer | string, algorithm: DigestAlgorithm = 'sha256'): string {
  return `${algorithm}:${createHash(algorithm).update(content).digest('hex')}`;
}
