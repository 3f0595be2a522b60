import { toDigest } from '../../oci/digest';
import { MediaType } from '../../oci/media-types';
import { single } from '../request';
import { RegistryRouter, RouteDependencies } from './context';
import { requireAccess } from '../middleware/authorize';

/**
 * dist-spec 1.1: GET /v2/<name>/referrers/<digest>[?artifactType=] answers an OCI index of the manifests
 * whose subject is <digest> — an empty one, never a 404, when there are none.
 */
export function referrerRoutes(router: RegistryRouter, { registry }: RouteDependencies): void {
  router.get('/v2/*name/referrers/:digest', requireAccess('pull'), async (ctx) => {
    const repository = registry.repository(ctx.params.name);
    const artifactType = single(ctx.query.artifactType);
    let manifests = await repository.listReferrers(toDigest(ctx.params.digest), artifactType);
    if (artifactType !== undefined) {
      manifests = manifests.filter((descriptor) => descriptor.artifactType === artifactType);
      ctx.set('OCI-Filters-Applied', 'artifactType');
    }
    ctx.type = MediaType.OciIndex;
    ctx.body = JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OciIndex, manifests });
  });
}
