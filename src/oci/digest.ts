import { createHash, Hash } from 'node:crypto';

/** Digest algorithms this registry stores and verifies (dist-spec: sha256 required, sha512 optional). */
export type DigestAlgorithm = 'sha256' | 'sha512';

const HEX_LENGTH: Record<DigestAlgorithm, number> = { sha256: 64, sha512: 128 };

// image-spec descriptor grammar: algorithm ":" encoded
const DIGEST_GRAMMAR = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;

export interface ParsedDigest {
  algorithm: DigestAlgorithm;
  hex: string;
  /** The canonical `algorithm:hex` string. */
  digest: string;
}

/** Returns the parsed digest, or null when the string is not a digest this registry supports. */
export function parseDigest(value: string): ParsedDigest | null {
  if (!DIGEST_GRAMMAR.test(value)) return null;
  const colon = value.indexOf(':');
  const algorithm = value.slice(0, colon);
  const hex = value.slice(colon + 1);
  if (algorithm !== 'sha256' && algorithm !== 'sha512') return null;
  if (hex.length !== HEX_LENGTH[algorithm] || !/^[a-f0-9]+$/.test(hex)) return null;
  return { algorithm, hex, digest: value };
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
