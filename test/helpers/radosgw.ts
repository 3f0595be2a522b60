/**
 * Ceph's RADOS Gateway as a throwaway S3 service for a test suite (scripts/radosgw.cjs starts it, the
 * bench uses the same), with a client of it made as the registry makes one.
 */
import { readFile } from 'node:fs/promises';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
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
  /** Creates a bucket (a fresh one per test keeps tests apart). */
  createBucket(name: string): Promise<void>;
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
    createBucket: async (name) => {
      await client.send(new CreateBucketCommand({ Bucket: name }));
    },
    requestLog: async () => (await readFile(gateway.logFile, 'utf8')).split('\n').filter((line) => line.includes('beast:')),
    close: async () => {
      client.destroy();
      await gateway.stop();
    },
  };
}
