import { toManifestReference } from '../../oci/digest';
import { MediaType, bareMediaType } from '../../oci/media-types';
import { StoredManifest } from '../../storage/repository';
import { RegistryError } from '../../oci/errors';
import { readBody, respondEmpty } from '../request';
import { RegistryRouter, RouteDependencies } from './context';
import { requireAccess } from '../middleware/authorize';

/** GET, HEAD, PUT and DELETE /v2/<name>/manifests/<reference>, where reference is a tag or a digest. */
export function manifestRoutes(router: RegistryRouter, { registry, config }: RouteDependencies): void {
  const serve = (withBody: boolean) => async (ctx: Parameters<Parameters<RegistryRouter['get']>[1]>[0]) => {
    const manifest = await registry.repository(ctx.params.name).getManifest(toManifestReference(ctx.params.reference));
    requireAccepted(manifest, ctx.get('Accept'));
    ctx.status = 200;
    ctx.set({ 'Docker-Content-Digest': manifest.digest, ETag: `"${manifest.digest}"` });
    // Which of an upstream's URLs (`[[proxy.upstreams]] urls`) answered, when one just did.
    if (manifest.servedBy) ctx.set('X-Registry-Upstream', manifest.servedBy);
    ctx.type = manifest.mediaType;
    if (withBody) ctx.body = manifest.content;
    else ctx.set('Content-Length', String(manifest.size));
  };
  router.get('/v2/*name/manifests/:reference', requireAccess('pull'), serve(true));
  router.head('/v2/*name/manifests/:reference', requireAccess('pull'), serve(false));

  router.put('/v2/*name/manifests/:reference', requireAccess('push'), async (ctx) => {
    const repository = registry.repository(ctx.params.name);
    const content = await readBody(ctx, config.max_manifest_size);
    const result = await repository.putManifest(toManifestReference(ctx.params.reference), content, ctx.get('Content-Type') || undefined);
    const headers: Record<string, string> = {
      Location: `/v2/${repository.name}/manifests/${result.digest}`,
      'Docker-Content-Digest': result.digest,
    };
    // dist-spec 1.1: a registry that processes `subject` says so with OCI-Subject.
    if (result.subject) headers['OCI-Subject'] = result.subject;
    respondEmpty(ctx, 201, headers);
  });

  router.delete('/v2/*name/manifests/:reference', requireAccess('delete'), async (ctx) => {
    await registry.repository(ctx.params.name).deleteManifest(toManifestReference(ctx.params.reference));
    respondEmpty(ctx, 202);
  });
}

/**
 * As the reference registry: OCI manifests and indexes are only served to clients that list their
 * media type in Accept. An absent Accept or `*` / `*` accepts anything; Docker types are always served.
 */
function requireAccepted(manifest: StoredManifest, acceptHeader: string): void {
  if (manifest.mediaType !== MediaType.OciManifest && manifest.mediaType !== MediaType.OciIndex) return;
  const accepted = acceptHeader.split(',').map(bareMediaType).filter((type) => type !== '');
  if (accepted.length === 0 || accepted.includes('*/*') || accepted.includes(manifest.mediaType)) return;
  throw new RegistryError('MANIFEST_UNKNOWN', {
    message: `${manifest.mediaType} found, but the Accept header does not allow it`,
    detail: { mediaType: manifest.mediaType },
  });
}
