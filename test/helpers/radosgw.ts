/**
 * Ceph's RADOS Gateway as a throwaway S3 service for a test suite (scripts/radosgw.cjs starts it, the
 * bench uses the same), with a client of it made as the registry makes one.
 */
import { readFile } from 'node:fs/promises';
import { CreateBucketCommand, ListMultipartUploadsCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { s3Client } from '../../src/storage/stores';

// Plain CommonJS, shared with the bench (bench/run.mjs cannot load TypeScript).
const { startRadosgw: startGateway } = require('../../scripts/radosgw.cjs') as {
  startRadosgw(): Promise<{ endpoint: string; accessKeyId: string; secretAccessKey: string; logFile: string; stop(): Promise<void> }>;
};

export interface Radosgw {
  /** `http://127.0.0.1:<port>` */
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** A client of the gateway as the registry makes one (path-style, checksums only where required). */
  client: S3Client;
  /** The keys that put a registry on `bucket` of the gateway, as command-line overrides. */
  registrySettings(bucket: string, prefix?: string): Record<string, string>;
  /** Creates a bucket (a fresh one per test keeps tests apart). */
  createBucket(name: string): Promise<void>;
  /** The keys of a bucket's objects under `prefix`, sorted. */
  objectKeys(bucket: string, prefix?: string): Promise<string[]>;
  /** The keys of a bucket's unfinished multipart uploads under `prefix`, sorted. */
  multipartKeys(bucket: string, prefix?: string): Promise<string[]>;
  /** radosgw's log of requests, one line each (`beast: … "GET /bucket/key?… HTTP/1.1" 200 …`). */
  requestLog(): Promise<string[]>;
  close(): Promise<void>;
}

export async function startRadosgw(): Promise<Radosgw> {
  const gateway = await startGateway();
  const client = s3Client({
    endpoint: gateway.endpoint,
    region: 'us-east-1',
    bucket: '',
    prefix: '',
    path_style: true,
    access_key_id: gateway.accessKeyId,
    secret_access_key: gateway.secretAccessKey,
    redirect: false,
    redirect_expiry: 0,
  });
  return {
    endpoint: gateway.endpoint,
    accessKeyId: gateway.accessKeyId,
    secretAccessKey: gateway.secretAccessKey,
    client,
    registrySettings: (bucket, prefix = '') => ({
      'storage.backend': 's3',
      'storage.s3.endpoint': gateway.endpoint,
      'storage.s3.bucket': bucket,
      'storage.s3.prefix': prefix,
      'storage.s3.path_style': 'true',
      'storage.s3.access_key_id': gateway.accessKeyId,
      'storage.s3.secret_access_key': gateway.secretAccessKey,
    }),
    createBucket: async (name) => {
      await client.send(new CreateBucketCommand({ Bucket: name }));
    },
    objectKeys: async (bucket, prefix) => {
      const keys: string[] = [];
      let token: string | undefined;
      do {
        const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
        keys.push(...(page.Contents ?? []).map((object) => object.Key!));
        token = page.IsTruncated ? page.NextContinuationToken : undefined;
      } while (token);
      return keys.sort();
    },
    multipartKeys: async (bucket, prefix) => {
      const keys: string[] = [];
      let marker: [string | undefined, string | undefined] = [undefined, undefined];
      do {
        const page = await client.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: prefix, KeyMarker: marker[0], UploadIdMarker: marker[1] }));
        keys.push(...(page.Uploads ?? []).map((upload) => upload.Key!));
        marker = page.IsTruncated ? [page.NextKeyMarker, page.NextUploadIdMarker] : [undefined, undefined];
      } while (marker[0] !== undefined);
      return keys.sort();
    },
    requestLog: async () => (await readFile(gateway.logFile, 'utf8')).split('\n').filter((line) => line.includes('beast:')),
    close: async () => {
      client.destroy();
      await gateway.stop();
    },
  };
}
