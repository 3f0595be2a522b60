// Generated blob content: the same bytes each time for a given seed, made on the fly in 1 MiB
// pieces, so a 1 GiB blob is never held in memory. Incompressible (random noise), and distinct per
// seed and per piece (each piece is stamped with its seed and offset).
import { createHash, randomBytes } from 'node:crypto';

export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;
export const PIECE = MiB;

const NOISE = randomBytes(PIECE);

/** Pieces of blob `seed` (of `size` bytes) from byte `start` (a multiple of PIECE) up to `end` (exclusive). */
export function* pieces(seed, size, start = 0, end = size) {
  if (start % PIECE !== 0) throw new Error(`start ${start} is not a multiple of ${PIECE}`);
  for (let offset = start; offset < end; offset += PIECE) {
    const length = Math.min(PIECE, end - offset);
    // A fresh buffer per piece: the socket may still hold the previous one.
    const piece = Buffer.allocUnsafe(length);
    NOISE.copy(piece, 0, 0, length);
    if (length >= 16) {
      piece.writeDoubleLE(offset, 0);
      piece.writeUInt32LE(seed, 8);
      piece.writeUInt32LE(size % 0x1_0000_0000, 12);
    }
    yield piece;
  }
}

const digests = new Map();

/** sha256 digest of blob `seed`, computed once per process by streaming its pieces. */
export function blobDigest(seed, size) {
  const key = `${seed}/${size}`;
  let digest = digests.get(key);
  if (!digest) {
    const hash = createHash('sha256');
    for (const piece of pieces(seed, size)) hash.update(piece);
    digest = `sha256:${hash.digest('hex')}`;
    digests.set(key, digest);
  }
  return digest;
}

export function sha256(buffer) {
  return `sha256:${createHash('sha256').update(buffer).digest('hex')}`;
}
