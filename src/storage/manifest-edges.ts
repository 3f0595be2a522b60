/**
 * SQL: the manifest graph's edges, as rows (repository_id, parent, child): an index to each manifest it
 * lists, and a subject to each manifest that refers to it (signatures, SBOMs). Whatever keeps a manifest
 * (a tag: gc.ts; a pin: pins.ts) keeps what these edges reach from it, in the same repository. One
 * derived table, so that a recursive query has the one recursive term PostgreSQL allows.
 */
export const MANIFEST_EDGES = `(SELECT repository_id, manifest_digest AS parent, child_digest AS child FROM manifest_references
              WHERE child_kind = 'manifest'
            UNION ALL
            SELECT repository_id, subject_digest, digest FROM manifests WHERE subject_digest IS NOT NULL)`;
