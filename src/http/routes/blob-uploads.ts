import { RegistryError } from '../../oci/errors';
import { optionalBody, parseContentRange, respondEmpty, single } from '../request';
import { uploadHeaders } from '../../storage/uploads';
import { RegistryRouter, RouteDependencies } from './context';

/** The upload protocol: POST opens (or mounts, or uploads whole), PATCH appends, PUT closes, GET tells, DELETE cancels. */
export function blobUploadRoutes(router: RegistryRouter, { registry }: RouteDependencies): void {
  router.post('/v2/*name/blobs/uploads/', async (ctx) => {
    const repository = registry.repository(ctx.params.name);
    const mount = single(ctx.query.mount);
    const from = single(ctx.query.from);
    const digest = single(ctx.query.digest);

    // dist-spec: a mount that cannot be done falls back to an ordinary upload session.
    if (mount !== undefined && from !== undefined && (await tryMount(mount, from))) {
      return created(mount);
    }
    // dist-spec: POST ?digest= with the whole blob as body (a zero-length blob included).
    if (digest !== undefined && mount === undefined) {
      const written = await repository.writeBlob(ctx.req, digest);
      return created(written.digest);
    }
    const upload = await repository.startUpload();
    respondEmpty(ctx, 202, uploadHeaders(repository.name, upload.id, 0));

    async function tryMount(mountDigest: string, fromName: string): Promise<boolean> {
      let source;
      try {
        source = registry.repository(fromName);
      } catch {
        return false; // an invalid `from` is not mountable; the client gets a session instead
      }
      return repository.mountBlob(mountDigest, source.name);
    }

    function created(blobDigest: string): void {
      respondEmpty(ctx, 201, {
        Location: `/v2/${repository.name}/blobs/${blobDigest}`,
        'Docker-Content-Digest': blobDigest,
      });
    }
  });

  router.get('/v2/*name/blobs/uploads/:uploadId', async (ctx) => {
    const repository = registry.repository(ctx.params.name);
    const upload = await repository.uploadStatus(ctx.params.uploadId);
    respondEmpty(ctx, 204, uploadHeaders(repository.name, upload.id, upload.size));
  });

  router.patch('/v2/*name/blobs/uploads/:uploadId', async (ctx) => {
    const repository = registry.repository(ctx.params.name);
    const range = parseContentRange(ctx.get('Content-Range') || undefined);
    const upload = await repository.appendUpload(ctx.params.uploadId, ctx.req, range);
    // dist-spec: PATCH answers 202 with Location and Range: 0-<offset-1>
    respondEmpty(ctx, 202, uploadHeaders(repository.name, upload.id, upload.size));
  });

  router.put('/v2/*name/blobs/uploads/:uploadId', async (ctx) => {
    const repository = registry.repository(ctx.params.name);
    const digest = single(ctx.query.digest);
    if (digest === undefined) {
      throw new RegistryError('DIGEST_INVALID', { message: 'closing an upload needs ?digest=' });
    }
    const body = optionalBody(ctx);
    const range = body ? parseContentRange(ctx.get('Content-Range') || undefined) : undefined;
    const written = await repository.finishUpload(ctx.params.uploadId, digest, body, range);
    respondEmpty(ctx, 201, {
      Location: `/v2/${repository.name}/blobs/${written.digest}`,
      'Docker-Content-Digest': written.digest,
    });
  });

  router.delete('/v2/*name/blobs/uploads/:uploadId', async (ctx) => {
    await registry.repository(ctx.params.name).cancelUpload(ctx.params.uploadId);
    respondEmpty(ctx, 204);
  });
}
