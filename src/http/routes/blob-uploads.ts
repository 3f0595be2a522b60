import { toDigest } from '../../oci/digest';
import { RegistryError } from '../../oci/errors';
import { optionalBody, parseContentRange, respondEmpty, single } from '../request';
import { uploadHeaders } from '../../storage/uploads';
import { callerUser, pullFilter, requireAccess } from '../middleware/authorize';
import { Middleware } from 'koa';
import { RegistryRouter, RouteDependencies } from './context';

/**
 * The upload protocol: POST opens (or mounts, or uploads whole), PATCH appends, PUT closes, GET tells, DELETE
 * cancels. Every request on an upload is a push. With `[auth]`, a session belongs to the user who opened it
 * (kept with the session, across restarts), and a user may hold `max_uploads` sessions at a time.
 */
export function blobUploadRoutes(router: RegistryRouter, { registry, access }: RouteDependencies): void {
  const owners = access?.uploads;

  /** Another user's session is as good as unknown: its id says nothing about who else may write to it. */
  const ownSession: Middleware = async (ctx, next) => {
    if (!owners) return next();
    const { uploadId } = ctx.params as { uploadId: string };
    if (!(await owners.mayUse(uploadId, callerUser(ctx)))) throw new RegistryError('BLOB_UPLOAD_UNKNOWN', { detail: { uploadId } });
    const end = owners.begin(uploadId);
    try {
      await next();
    } finally {
      end();
    }
  };

  router.post('/v2/*name/blobs/uploads/', requireAccess('push'), async (ctx) => {
    const repository = registry.repository(ctx.params.name);
    const digest = single(ctx.query.digest);
    // dist-spec: a mount the registry will not do falls back to an upload session. A `from` the caller may not
    // pull is not mounted from (no reading across rights): the request is then as if it had named no mount.
    const mayPull = pullFilter(ctx, access ?? null) ?? (() => true);
    const requestedFrom = single(ctx.query.from);
    const mountable = requestedFrom === undefined || mayPull(requestedFrom);
    const mount = mountable ? single(ctx.query.mount) : undefined;
    const from = mountable ? requestedFrom : undefined;

    // dist-spec: a mount that cannot be done falls back to an ordinary upload session.
    if (mount !== undefined && from !== undefined && (await tryMount(mount, from))) {
      return created(mount);
    }
    // dist-spec: POST ?digest= with the whole blob as body (a zero-length blob included).
    if (digest !== undefined && mount === undefined) {
      const written = await repository.writeBlob(ctx.req, toDigest(digest));
      return created(written.digest);
    }
    const user = callerUser(ctx);
    if (owners && !owners.mayOpen(user)) {
      throw new RegistryError('TOOMANYREQUESTS', {
        message: `at most ${access!.config.max_uploads} open uploads per user`,
        headers: { 'Retry-After': '60' },
      });
    }
    const upload = await repository.startUpload();
    await owners?.opened(upload.id, user);
    respondEmpty(ctx, 202, uploadHeaders(repository.name, upload.id, 0));

    async function tryMount(mountDigest: string, fromName: string): Promise<boolean> {
      let source;
      try {
        source = registry.repository(fromName);
      } catch {
        return false; // an invalid `from` is not mountable; the client gets a session instead
      }
      return repository.mountBlob(toDigest(mountDigest), source.name);
    }

    function created(blobDigest: string): void {
      respondEmpty(ctx, 201, {
        Location: `/v2/${repository.name}/blobs/${blobDigest}`,
        'Docker-Content-Digest': blobDigest,
      });
    }
  });

  router.get('/v2/*name/blobs/uploads/:uploadId', requireAccess('push'), ownSession, async (ctx) => {
    const repository = registry.repository(ctx.params.name);
    const upload = await repository.uploadStatus(ctx.params.uploadId);
    respondEmpty(ctx, 204, uploadHeaders(repository.name, upload.id, upload.size));
  });

  router.patch('/v2/*name/blobs/uploads/:uploadId', requireAccess('push'), ownSession, async (ctx) => {
    const repository = registry.repository(ctx.params.name);
    const range = parseContentRange(ctx.get('Content-Range') || undefined);
    const upload = await repository.appendUpload(ctx.params.uploadId, ctx.req, range);
    // dist-spec: PATCH answers 202 with Location and Range: 0-<offset-1>
    respondEmpty(ctx, 202, uploadHeaders(repository.name, upload.id, upload.size));
  });

  router.put('/v2/*name/blobs/uploads/:uploadId', requireAccess('push'), ownSession, async (ctx) => {
    const repository = registry.repository(ctx.params.name);
    const digest = single(ctx.query.digest);
    if (digest === undefined) {
      throw new RegistryError('DIGEST_INVALID', { message: 'closing an upload needs ?digest=' });
    }
    const body = optionalBody(ctx);
    const range = body ? parseContentRange(ctx.get('Content-Range') || undefined) : undefined;
    const written = await repository.finishUpload(ctx.params.uploadId, toDigest(digest), body, range);
    owners?.closed(ctx.params.uploadId);
    respondEmpty(ctx, 201, {
      Location: `/v2/${repository.name}/blobs/${written.digest}`,
      'Docker-Content-Digest': written.digest,
    });
  });

  router.delete('/v2/*name/blobs/uploads/:uploadId', requireAccess('push'), ownSession, async (ctx) => {
    await registry.repository(ctx.params.name).cancelUpload(ctx.params.uploadId);
    owners?.closed(ctx.params.uploadId);
    respondEmpty(ctx, 204);
  });
}
