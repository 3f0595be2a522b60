import { S3Client } from '@aws-sdk/client-s3';
import type { Config, S3Config } from '../config/config';
import type { BlobStore, CommitHook } from './blob-store';
import { FilesystemBlobStore } from './filesystem-blob-store';
import { S3BlobStore } from './s3-blob-store';

/** How long a connection to the object store may take to open. */
const S3_CONNECT_TIMEOUT_MS = 10_000;
/** A connection to the object store with nothing moving either way for this long is given up (a hung service). */
const S3_IDLE_TIMEOUT_MS = 120_000;
/**
 * Connections to the object store at once. Every streamed blob GET holds one for as long as its client
 * reads: at the SDK's 50, the 51st pull (and every HEAD behind it) would wait for a stream to end.
 */
const S3_MAX_SOCKETS = 512;

/** The two stores of `[storage]`: hosted content and the pull-through cache's. */
export function openBlobStores(
  config: Pick<Config, 'storage' | 'registry_storage' | 'proxy_storage'>,
  beforeCommit: CommitHook,
): { hosted: BlobStore; proxy: BlobStore } {
  if (config.storage.backend === 's3') {
    const s3 = config.storage.s3;
    const client = s3Client(s3);
    const expiry = s3.redirect ? Math.floor(s3.redirect_expiry / 1000) : 0;
    const common = { client, bucket: s3.bucket, beforeCommit, redirectExpirySeconds: expiry };
    return {
      hosted: new S3BlobStore({ ...common, prefix: `${s3.prefix}registry/`, stagingRoot: config.registry_storage }),
      proxy: new S3BlobStore({ ...common, prefix: `${s3.prefix}proxy/`, stagingRoot: config.proxy_storage }),
    };
  }
  return {
    hosted: new FilesystemBlobStore(config.registry_storage, beforeCommit),
    proxy: new FilesystemBlobStore(config.proxy_storage, beforeCommit),
  };
}

export function s3Client(s3: S3Config): S3Client {
  return new S3Client({
    endpoint: s3.endpoint || undefined,
    region: s3.region,
    forcePathStyle: s3.path_style,
    credentials: s3.access_key_id ? { accessKeyId: s3.access_key_id, secretAccessKey: s3.secret_access_key } : undefined,
    // Checksums only where S3 requires them: the SDK's default (a CRC on every PUT, trailing a streamed
    // body) is refused by services that predate it, Ceph RGW 16 among them (411 on a streamed PutObject).
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    maxAttempts: 3,
    requestHandler: {
      connectionTimeout: S3_CONNECT_TIMEOUT_MS,
      socketTimeout: S3_IDLE_TIMEOUT_MS,
      httpAgent: { keepAlive: true, maxSockets: S3_MAX_SOCKETS },
      httpsAgent: { keepAlive: true, maxSockets: S3_MAX_SOCKETS },
    },
    // The SDK writes to the console when a streamed upload fails (it does not retry those; the store does):
    // the store's own error says what failed, in the registry's log.
    logger: { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined },
  });
}
