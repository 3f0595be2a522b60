/**
 * Reads a small stream whole (a manifest), stopping as soon as it passes `maxBytes`: undefined then,
 * so nothing larger than the cap is ever held. Callers say what the excess means to their client.
 */
export async function readAtMost(source: AsyncIterable<Uint8Array>, maxBytes: number): Promise<Buffer | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of source) {
    size += chunk.length;
    if (size > maxBytes) return undefined;
    chunks.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length));
  }
  return Buffer.concat(chunks);
}
