import type { UpstreamActivitySnapshot } from '../metrics/upstream-activity';
import type { RateLimitState } from '../proxy/rate-limits';
import type { Pin } from '../storage/pins';
import type { GcReport } from '../storage/gc';
import type { StoreKind } from '../storage/gc';
import { formatBytes, formatTime, html, SafeHtml } from './html';
import type { ImageDetails, Platform } from './image-details';
import type { StorageSample } from '../storage/storage-history';
import type { RepositoryListing, RepositoryView, StorageView, UpstreamView } from './ui-catalog';
import type { Viewer } from './viewer';

/** What every page needs to know about the request it answers. */
export interface PageContext {
  /** `[ui] path`, e.g. /ui/ */
  base: string;
  viewer: Viewer;
  /** The CSRF token of the viewer's cookie, for forms. */
  csrf: string;
  /** `host[:port]` that image references name: public_url's, or the request's. */
  registryHost: string;
  /** Whether auth is on (a login link makes sense). */
  loginPossible: boolean;
  /** A one-line outcome of the last action, from the redirect that followed it. */
  notice?: string;
}

type Section = 'repositories' | 'cache' | 'storage' | 'login' | 'none';

const MEDIA_TYPE_NAMES: Record<string, string> = {
  'application/vnd.oci.image.index.v1+json': 'OCI index',
  'application/vnd.oci.image.manifest.v1+json': 'OCI image',
  'application/vnd.docker.distribution.manifest.list.v2+json': 'Docker manifest list',
  'application/vnd.docker.distribution.manifest.v2+json': 'Docker image',
};

export function layout(page: PageContext, section: Section, title: string, body: SafeHtml): string {
  const { base, viewer } = page;
  const current = (name: Section) => (name === section ? new SafeHtml(' aria-current="page"') : '');
  const who = viewer.user
    ? html`<form method="post" action="${base}logout" class="inline"><input type="hidden" name="csrf" value="${page.csrf}"><span>Signed in as <strong>${viewer.user}</strong></span> <button type="submit" class="link">Log out</button></form>`
    : page.loginPossible
      ? html`<a href="${base}login"${current('login')}>Log in</a>`
      : '';
  return `<!doctype html>${html`<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><meta name="color-scheme" content="light dark"><title>${title} · Registry</title><link rel="stylesheet" href="${base}assets/ui.css"><script src="${base}assets/ui.js" defer></script></head><body><a class="skip" href="#main">Skip to content</a><header><nav aria-label="Main"><a class="brand" href="${base}">Registry</a><ul><li><a href="${base}"${current('repositories')}>Repositories</a></li><li><a href="${base}cache"${current('cache')}>Cache</a></li><li><a href="${base}storage"${current('storage')}>Storage</a></li></ul><div class="who">${who}</div></nav></header><main id="main">${page.notice ? html`<p class="notice" role="status">${page.notice}</p>` : ''}${body}</main></body></html>`}`;
}

export function repositoryListPage(page: PageContext, repositories: RepositoryListing[], query: string): string {
  const rows = repositories.map(
    (r) => html`<tr data-name="${r.name}"><th scope="row"><a href="${repositoryHref(page, r.name)}">${r.name}</a></th><td>${kindBadge(r.kind)}</td><td class="num">${r.tags ?? '—'}</td><td class="num">${r.kind === 'ghcr' ? '—' : formatBytes(r.size)}</td><td>${formatTime(r.lastPush)}</td><td>${formatTime(r.lastPull)}</td></tr>`,
  );
  const body = html`<h1>Repositories</h1>
<form method="get" action="${page.base}" class="search" role="search"><label for="q">Search repositories</label><input type="search" id="q" name="q" value="${query}" autocomplete="off" data-filter="#repositories"><button type="submit">Search</button></form>
<p id="repository-count" aria-live="polite">${count(repositories.length, 'repository', 'repositories')}</p>
${repositories.length === 0 ? html`<p>Nothing here yet. Push an image with <code>docker push ${page.registryHost}/name:tag</code>.</p>` : ''}
<div class="scroll" tabindex="0"><table id="repositories"><thead><tr><th scope="col">Repository</th><th scope="col">Kind</th><th scope="col" class="num">Tags</th><th scope="col" class="num">Size</th><th scope="col">Last push</th><th scope="col">Last pull</th></tr></thead><tbody>${rows}</tbody></table></div>`;
  return layout(page, 'repositories', 'Repositories', body);
}

export function repositoryPage(page: PageContext, view: RepositoryView): string {
  const { repository, tags, mayDelete } = view;
  const name = repository.name;
  const cached = repository.kind !== 'hosted';
  const first = tags.find((t) => t.tag === 'latest') ?? tags[0];
  const rows = tags.map(
    (t) => html`<tr><th scope="row"><a href="${imageHref(page, name, t.tag)}">${t.tag}</a></th><td><code title="${t.digest}">${shortDigest(t.digest)}</code></td><td>${mediaTypeName(t.mediaType, t.artifactType)}</td><td>${platformList(t.platforms)}</td><td class="num">${formatBytes(t.size)}</td><td>${formatTime(t.created)}</td><td>${labelList(t.labels)}</td><td>${formatTime(t.updatedAt)}</td><td class="actions">${copyButton(`docker pull ${page.registryHost}/${name}:${t.tag}`, `Copy pull command for ${t.tag}`)}${cached ? pinControl(page, name, t.tag, t.pin, mayDelete) : ''}${mayDelete ? html` <a class="danger" href="${repositoryHref(page, name)}/-/delete/${encodeURIComponent(t.tag)}" aria-label="${cached ? 'Evict' : 'Delete'} tag ${t.tag}">${cached ? 'Evict' : 'Delete'}</a>` : ''}</td></tr>`,
  );
  const body = html`<p class="crumbs"><a href="${page.base}">Repositories</a> /</p><h1>${name}</h1>
<p>${kindBadge(repository.kind)} ${count(tags.length, 'tag', 'tags')}${repository.kind !== 'ghcr' ? html`, ${formatBytes(repository.size)}, last push ${formatTime(repository.lastPush)}, last pull ${formatTime(repository.lastPull)}` : ''}</p>
${first ? html`<section aria-labelledby="pull"><h2 id="pull">Pull</h2>${pullCommands(page, `${name}:${first.tag}`)}</section>` : ''}
<section aria-labelledby="tags"><h2 id="tags">Tags</h2>${tags.length === 0 ? html`<p>No tags${cached ? ' cached yet: pull one through the cache and it appears here' : ''}.</p>` : html`<div class="scroll" tabindex="0"><table><thead><tr><th scope="col">Tag</th><th scope="col">Digest</th><th scope="col">Type</th><th scope="col">Platforms</th><th scope="col" class="num">Size</th><th scope="col">Created</th><th scope="col">Labels</th><th scope="col">Pushed</th><th scope="col">Actions</th></tr></thead><tbody>${rows}</tbody></table></div>`}</section>`;
  return layout(page, 'repositories', name, body);
}

/**
 * A cached tag's pin: a badge saying who pinned it (the configuration or a user), and for viewers with the
 * delete right a Pin or Unpin button (a form: it works without script). Configured pins are removed from
 * the configuration, so they get no button.
 */
function pinControl(page: PageContext, name: string, tag: string, pin: Pin | null, mayChange: boolean): SafeHtml {
  const action = (verb: 'pin' | 'unpin', reference: string, label: string) =>
    html` <form method="post" action="${repositoryHref(page, name)}/-/${verb}/${encodeURIComponent(reference)}" class="inline"><input type="hidden" name="csrf" value="${page.csrf}"><button type="submit" aria-label="${label}">${verb === 'pin' ? 'Pin' : 'Unpin'}</button></form>`;
  if (!pin) return mayChange ? action('pin', tag, `Pin tag ${tag}`) : html``;
  const badge = html` <span class="badge badge-pinned" title="${pinTitle(pin)}">pinned</span>`;
  return pin.source === 'api' && mayChange && !pin.isPrefix ? html`${badge}${action('unpin', pin.reference!, `Unpin tag ${tag}`)}` : badge;
}

function pinTitle(pin: Pin): string {
  const by = pin.source === 'config' ? 'the configuration ([[proxy.pin]])' : (pin.createdBy ?? 'anonymous');
  return `Pinned by ${by} on ${formatTime(pin.createdAt)}: eviction never removes it`;
}

export function imagePage(page: PageContext, image: ImageDetails): string {
  const { name, reference } = image;
  const separator = reference.includes(':') ? '@' : ':';
  const config = image.config;
  const facts: Array<[string, SafeHtml | string]> = [
    ['Digest', html`<code>${image.digest}</code>`],
    ['Media type', html`${mediaTypeName(image.mediaType, image.artifactType)} <code>${image.mediaType}</code>`],
    ['Size', formatBytes(image.size)],
    ['Created', formatTime(image.created)],
    ['Platforms', platformList(image.platforms, (digest) => imageHref(page, name, digest))],
  ];
  if (config?.entrypoint) facts.push(['Entrypoint', html`<code>${JSON.stringify(config.entrypoint)}</code>`]);
  if (config?.cmd) facts.push(['Command', html`<code>${JSON.stringify(config.cmd)}</code>`]);
  if (config?.workingDir) facts.push(['Working directory', html`<code>${config.workingDir}</code>`]);
  if (config?.user) facts.push(['User', html`<code>${config.user}</code>`]);
  if (config?.exposedPorts?.length) facts.push(['Exposed ports', config.exposedPorts.join(', ')]);
  const body = html`<p class="crumbs"><a href="${page.base}">Repositories</a> / <a href="${repositoryHref(page, name)}">${name}</a> /</p><h1>${name}${separator}${reference}</h1>
<dl class="facts">${facts.map(([term, value]) => html`<dt>${term}</dt><dd>${value}</dd>`)}</dl>
<section aria-labelledby="pull"><h2 id="pull">Pull</h2>${pullCommands(page, `${name}@${image.digest}`)}</section>
${image.layers.length > 0 ? html`<section aria-labelledby="layers"><h2 id="layers">Layers</h2><div class="scroll" tabindex="0"><table><thead><tr><th scope="col" class="num">#</th><th scope="col">Digest</th><th scope="col">Media type</th><th scope="col" class="num">Size</th></tr></thead><tbody>${image.layers.map((l, i) => html`<tr><td class="num">${i + 1}</td><td><code title="${l.digest}">${shortDigest(l.digest)}</code></td><td><code>${l.mediaType}</code></td><td class="num">${formatBytes(l.size)}</td></tr>`)}</tbody></table></div></section>` : ''}
${config && config.history.length > 0 ? html`<section aria-labelledby="history"><h2 id="history">History</h2><div class="scroll" tabindex="0"><table><thead><tr><th scope="col">Created</th><th scope="col">Created by</th><th scope="col">Layer</th></tr></thead><tbody>${config.history.map((h) => html`<tr><td>${formatTime(h.created)}</td><td><code class="wrap">${h.createdBy ?? ''}</code>${h.comment ? html` <small>${h.comment}</small>` : ''}</td><td>${h.emptyLayer ? 'none' : 'yes'}</td></tr>`)}</tbody></table></div></section>` : ''}
${config?.env?.length ? html`<section aria-labelledby="env"><h2 id="env">Environment</h2><ul class="plain">${config.env.map((e) => html`<li><code class="wrap">${e}</code></li>`)}</ul></section>` : ''}
${Object.keys(image.labels).length > 0 ? html`<section aria-labelledby="labels"><h2 id="labels">Labels</h2>${keyValues(image.labels)}</section>` : ''}
${Object.keys(image.annotations).length > 0 ? html`<section aria-labelledby="annotations"><h2 id="annotations">Annotations</h2>${keyValues(image.annotations)}</section>` : ''}
${image.referrers.length > 0 ? html`<section aria-labelledby="referrers"><h2 id="referrers">Referrers</h2><p>Signatures, SBOMs and other artifacts about this image.</p><div class="scroll" tabindex="0"><table><thead><tr><th scope="col">Digest</th><th scope="col">Artifact type</th><th scope="col" class="num">Size</th></tr></thead><tbody>${image.referrers.map((r) => html`<tr><td><a href="${imageHref(page, name, r.digest)}"><code>${shortDigest(r.digest)}</code></a></td><td><code>${r.artifactType ?? r.mediaType}</code></td><td class="num">${formatBytes(r.size)}</td></tr>`)}</tbody></table></div></section>` : ''}`;
  return layout(page, 'repositories', `${name}${separator}${reference}`, body);
}

export function deleteConfirmPage(page: PageContext, name: string, reference: string, cached: boolean): string {
  const verb = cached ? 'Evict' : 'Delete';
  const body = html`<p class="crumbs"><a href="${page.base}">Repositories</a> / <a href="${repositoryHref(page, name)}">${name}</a> /</p><h1>${verb} ${name}:${reference}?</h1>
<p>${cached ? 'The cached image is forgotten; the next pull fetches it from the upstream again. Its files are freed by the next garbage collection.' : 'The tag is removed from the registry. The image stays reachable by digest until garbage collection removes what nothing references.'}</p>
<form method="post" action="${repositoryHref(page, name)}/-/delete/${encodeURIComponent(reference)}"><input type="hidden" name="csrf" value="${page.csrf}"><button type="submit" class="danger">${verb} ${reference}</button> <a href="${repositoryHref(page, name)}">Cancel</a></form>`;
  return layout(page, 'repositories', `${verb} ${name}:${reference}`, body);
}

export function cachePage(page: PageContext, upstreams: UpstreamView[]): string {
  const sections = upstreams.map(
    (u) => html`<section aria-labelledby="upstream-${u.upstream}" data-upstream="${u.upstream}"><h2 id="upstream-${u.upstream}">${u.upstream}</h2><p>${u.url ? html`<code>${u.url}</code>: ` : ''}${count(u.repositories.length, 'repository', 'repositories')}, ${count(u.manifests, 'manifest', 'manifests')}, ${formatBytes(u.bytes)}, last pull ${formatTime(u.lastPull)}</p>
${u.activity ? upstreamActivity(u.upstream, u.activity) : ''}
${u.rateLimits.length > 0 ? rateLimitTable(u.upstream, u.rateLimits) : ''}
${u.pins.length > 0 ? pinTable(page, u.upstream, u.pins) : ''}
${u.repositories.length === 0 ? '' : html`<div class="scroll" tabindex="0"><table><caption class="offscreen">Cached repositories of ${u.upstream}</caption><thead><tr><th scope="col">Repository</th><th scope="col" class="num">Tags</th><th scope="col" class="num">Manifests</th><th scope="col" class="num">Size</th><th scope="col">Last pull</th><th scope="col">Actions</th></tr></thead><tbody>${u.repositories.map(
      (r) => html`<tr><th scope="row"><a href="${repositoryHref(page, r.name)}">${r.name}</a></th><td class="num">${r.tags}</td><td class="num">${r.manifests}</td><td class="num">${formatBytes(r.size)}</td><td>${formatTime(r.lastPull)}</td><td>${page.viewer.may('delete', r.name) ? html`<form method="post" action="${repositoryHref(page, r.name)}/-/evict" class="inline" data-confirm="Evict everything cached of ${r.name}?"><input type="hidden" name="csrf" value="${page.csrf}"><button type="submit" class="danger" aria-label="Evict ${r.name}">Evict</button></form>` : ''}</td></tr>`,
    )}</tbody></table></div>`}</section>`,
  );
  const body = html`<h1>Cache</h1><p>What the pull-through cache holds, per upstream, among the repositories you may pull. Hits, misses and the upstream's health count from the server's start.</p>${upstreams.length === 0 ? html`<p>Nothing cached yet. Pull through the cache with <code>docker pull ${page.registryHost}/proxy/docker.io/library/alpine</code>.</p>` : sections}`;
  return layout(page, 'cache', 'Cache', body);
}

/** The upstream's pull budget per credential (Docker Hub's ratelimit-* headers), and whether revalidation is paused. */
function rateLimitTable(upstream: string, states: RateLimitState[]): SafeHtml {
  const now = Date.now();
  return html`<div class="scroll" tabindex="0"><table class="rate-limits"><caption>Pull rate limit of ${upstream}</caption><thead><tr><th scope="col">Credential</th><th scope="col" class="num">Remaining</th><th scope="col" class="num">Limit</th><th scope="col">Window</th><th scope="col">Cached tags</th></tr></thead><tbody>${states.map(
    (state) =>
      html`<tr data-credential="${state.credential}"><th scope="row">${state.credential}</th><td class="num">${state.remaining ?? '—'}</td><td class="num">${state.limit ?? '—'}</td><td>${windowText(state.windowSeconds)}</td><td>${state.limitedUntil !== null && state.limitedUntil > now ? html`<span class="error">served without revalidation until ${formatTime(state.limitedUntil)}</span> (${state.reason === '429' ? 'the upstream answered 429' : 'below rate_limit_reserve'})` : 'revalidated as usual'}</td></tr>`,
  )}</tbody></table></div>`;
}

/** A rate-limit window as Docker Hub names it (w=21600): "6 h", "30 min", "45 s". */
function windowText(seconds: number | null): string {
  if (seconds === null) return '—';
  if (seconds >= 3600) return `${Number((seconds / 3600).toFixed(1))} h`;
  return seconds >= 60 ? `${Math.round(seconds / 60)} min` : `${seconds} s`;
}

/** Pins on the upstream's repositories; API pins can be removed here by viewers with the delete right. */
function pinTable(page: PageContext, upstream: string, pins: Pin[]): SafeHtml {
  return html`<div class="scroll" tabindex="0"><table class="pins"><caption>Pinned on ${upstream}: never evicted</caption><thead><tr><th scope="col">Pinned</th><th scope="col">By</th><th scope="col">Since</th><th scope="col">Actions</th></tr></thead><tbody>${pins.map((pin) => {
    const what = pin.isPrefix ? `${pin.repository}/* ${pin.tagPattern === null ? 'every tag' : `tags ${pin.tagPattern}`}` : `${pin.repository}${pin.reference!.includes(':') ? '@' : ':'}${pin.reference}`;
    const mayUnpin = pin.source === 'api' && !pin.isPrefix && page.viewer.may('delete', pin.repository);
    return html`<tr><th scope="row"><code>${what}</code></th><td>${pin.source === 'config' ? 'configuration' : (pin.createdBy ?? 'anonymous')}</td><td>${formatTime(pin.createdAt)}</td><td>${mayUnpin ? html`<form method="post" action="${repositoryHref(page, pin.repository)}/-/unpin/${encodeURIComponent(pin.reference!)}" class="inline"><input type="hidden" name="csrf" value="${page.csrf}"><input type="hidden" name="next" value="cache"><button type="submit" aria-label="Unpin ${what}">Unpin</button></form>` : ''}</td></tr>`;
  })}</tbody></table></div>`;
}

/** Hits, misses and stale serves by kind, and when the upstream last answered and last failed. */
function upstreamActivity(upstream: string, activity: UpstreamActivitySnapshot): SafeHtml {
  const { served, lastSuccess, lastError } = activity;
  const failing = lastError !== null && (lastSuccess === null || lastError.at >= lastSuccess);
  const row = (label: string, kind: 'manifest' | 'blob') =>
    html`<tr><th scope="row">${label}</th><td class="num">${served[kind].hit}</td><td class="num">${served[kind].miss}</td><td class="num">${served[kind].stale}</td></tr>`;
  return html`<dl class="facts health"><dt>Upstream</dt><dd data-health="${failing ? 'failing' : lastSuccess === null ? 'unknown' : 'ok'}">${failing ? html`<span class="error">failing</span>` : lastSuccess === null ? 'not asked yet' : 'answering'}</dd><dt>Last success</dt><dd>${formatTime(lastSuccess)}</dd><dt>Last error</dt><dd>${lastError ? `${formatTime(lastError.at)} (${lastError.reason})` : '—'}</dd></dl>
<div class="scroll" tabindex="0"><table class="served"><caption class="offscreen">Served for ${upstream} since the server started</caption><thead><tr><th scope="col">Served</th><th scope="col" class="num">Hits</th><th scope="col" class="num">Misses</th><th scope="col" class="num">Stale serves</th></tr></thead><tbody>${row('Manifests', 'manifest')}${row('Blobs', 'blob')}</tbody></table></div>`;
}

export function storagePage(page: PageContext, { stores, history, garbageCollections }: StorageView, report?: GcReport): string {
  const last = garbageCollections[0];
  const names: Record<StoreKind, string> = { hosted: 'Hosted (pushed)', proxy: 'Cache (pulled through)' };
  const body = html`<h1>Storage</h1>
<div class="scroll" tabindex="0"><table><thead><tr><th scope="col">Store</th><th scope="col" class="num">Files</th><th scope="col" class="num">Size</th></tr></thead><tbody>${(Object.keys(names) as StoreKind[]).map((kind) => html`<tr><th scope="row">${names[kind]}</th><td class="num">${stores[kind].blobs}</td><td class="num">${formatBytes(stores[kind].bytes)}</td></tr>`)}</tbody></table></div>
<section aria-labelledby="history"><h2 id="history">Over time</h2>${storageChart(history, names)}</section>
<section aria-labelledby="gc"><h2 id="gc">Garbage collection</h2><p id="gc-last">${last ? `Last collection: ${formatTime(last.finishedAt)}, freed ${formatBytes(last.bytesFreed)} (${count(last.manifests, 'manifest', 'manifests')}, ${count(last.blobs, 'file', 'files')}, ${count(last.uploadsExpired, 'upload', 'uploads')} expired).` : 'No collection has run yet.'}</p>${page.viewer.mayCollect ? html`<p>A dry run lists what a collection would remove now (untagged manifests when <code>delete_untagged</code> is on, cache eviction, files nothing uses), and removes nothing.</p><div class="buttons"><form method="post" action="${page.base}storage/gc-dry-run"><input type="hidden" name="csrf" value="${page.csrf}"><button type="submit" id="gc-dry-run">Dry run</button></form> <a href="${page.base}storage/gc" id="gc-run">Run garbage collection…</a></div>` : html`<p>Garbage collection needs the delete right on every repository (the <code>""</code> prefix).</p>`}
${report ? gcReport(report) : ''}
${garbageCollections.length > 0 ? html`<div class="scroll" tabindex="0"><table id="gc-runs"><caption>The last collections</caption><thead><tr><th scope="col">Finished</th><th scope="col" class="num">Freed</th><th scope="col" class="num">Manifests</th><th scope="col" class="num">Files</th><th scope="col" class="num">Uploads expired</th><th scope="col" class="num">Took</th></tr></thead><tbody>${garbageCollections.map((run) => html`<tr><td>${formatTime(run.finishedAt)}</td><td class="num">${formatBytes(run.bytesFreed)}</td><td class="num">${run.manifests}</td><td class="num">${run.blobs}</td><td class="num">${run.uploadsExpired}</td><td class="num">${(run.durationMs / 1000).toFixed(1)} s</td></tr>`)}</tbody></table></div>` : ''}</section>`;
  return layout(page, 'storage', 'Storage', body);
}

/** Points drawn per line at most: more would not show on a page's width. */
const CHART_POINTS = 240;
const CHART_WIDTH = 600;
const CHART_HEIGHT = 200;

/**
 * Bytes per store over time as an inline SVG (no library, no script): one line per store, scaled to the
 * largest size, with the scale and the time range as text beside it and the same figures in its description.
 */
function storageChart(history: StorageSample[], names: Record<StoreKind, string>): SafeHtml {
  if (history.length < 2) {
    return html`<p id="storage-chart-empty">The server samples the stores' sizes every hour and after each garbage collection; the chart appears from the second sample.</p>`;
  }
  const step = Math.ceil(history.length / CHART_POINTS);
  const shown = history.filter((_, i) => i % step === 0 || i === history.length - 1);
  const first = shown[0].at;
  const span = Math.max(shown[shown.length - 1].at - first, 1);
  const top = Math.max(1, ...shown.flatMap((sample) => [sample.stores.hosted.bytes, sample.stores.proxy.bytes]));
  const kinds = Object.keys(names) as StoreKind[];
  const points = (kind: StoreKind) =>
    shown
      .map((sample) => `${(((sample.at - first) / span) * CHART_WIDTH).toFixed(1)},${(CHART_HEIGHT - (sample.stores[kind].bytes / top) * (CHART_HEIGHT - 4) - 2).toFixed(1)}`)
      .join(' ');
  const end = shown[shown.length - 1];
  const description = kinds
    .map((kind) => `${names[kind]}: ${formatBytes(shown[0].stores[kind].bytes)} on ${formatTime(first)}, ${formatBytes(end.stores[kind].bytes)} on ${formatTime(end.at)}`)
    .join('; ');
  return html`<figure class="chart"><svg id="storage-chart" viewBox="0 0 ${CHART_WIDTH} ${CHART_HEIGHT}" preserveAspectRatio="none" role="img" aria-labelledby="storage-chart-title storage-chart-description"><title id="storage-chart-title">Bytes per store over time</title><desc id="storage-chart-description">${description}</desc><line class="axis" x1="0" y1="${CHART_HEIGHT - 1}" x2="${CHART_WIDTH}" y2="${CHART_HEIGHT - 1}"></line>${kinds.map((kind) => html`<polyline class="line line-${kind}" data-store="${kind}" fill="none" vector-effect="non-scaling-stroke" points="${points(kind)}"></polyline>`)}</svg>
<figcaption><span class="chart-scale">Top: ${formatBytes(top)}. From ${formatTime(first)} to ${formatTime(end.at)}, ${count(history.length, 'sample', 'samples')}.</span> <span class="legend">${kinds.map((kind) => html`<span class="key key-${kind}">${names[kind]}</span> `)}</span></figcaption></figure>`;
}

export function gcConfirmPage(page: PageContext): string {
  const body = html`<p class="crumbs"><a href="${page.base}storage">Storage</a> /</p><h1>Run garbage collection now?</h1>
<p>It deletes what nothing references any more: untagged manifests when <code>[gc] delete_untagged</code> is on, cached images past the cache's limits, files no manifest uses (older than <code>[gc] grace</code>), and expired uploads. What it removes is gone for good; a dry run on the storage page lists it first. Pulls and pushes go on while it runs.</p>
<form method="post" action="${page.base}storage/gc"><input type="hidden" name="csrf" value="${page.csrf}"><button type="submit" class="danger">Run garbage collection</button> <a href="${page.base}storage">Cancel</a></form>`;
  return layout(page, 'storage', 'Run garbage collection', body);
}

function gcReport(report: GcReport): SafeHtml {
  return html`<h3 id="gc-report">Dry run: ${count(report.manifests.length, 'manifest', 'manifests')} and ${count(report.blobs.length, 'file', 'files')}, ${formatBytes(report.bytesFreed)} to free</h3>
${report.manifests.length > 0 ? html`<div class="scroll" tabindex="0"><table><thead><tr><th scope="col">Repository</th><th scope="col">Manifest</th><th scope="col">Why</th></tr></thead><tbody>${report.manifests.map((m) => html`<tr><td>${m.repository}</td><td><code title="${m.digest}">${shortDigest(m.digest)}</code></td><td>${m.reason}</td></tr>`)}</tbody></table></div>` : ''}
${report.blobs.length > 0 ? html`<div class="scroll" tabindex="0"><table><thead><tr><th scope="col">Store</th><th scope="col">File</th><th scope="col" class="num">Size</th></tr></thead><tbody>${report.blobs.map((b) => html`<tr><td>${b.store}</td><td><code title="${b.digest}">${shortDigest(b.digest)}</code></td><td class="num">${formatBytes(b.size)}</td></tr>`)}</tbody></table></div>` : ''}`;
}

export function loginPage(page: PageContext, next: string, failed: string | undefined): string {
  const body = html`<h1>Log in</h1>${failed ? html`<p class="error" role="alert">${failed}</p>` : ''}
<form method="post" action="${page.base}login" class="login"><input type="hidden" name="csrf" value="${page.csrf}"><input type="hidden" name="next" value="${next}">
<label for="username">User</label><input id="username" name="username" autocomplete="username" required autofocus>
<label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Log in</button></form><p>The same users as <code>docker login ${page.registryHost}</code>.</p>`;
  return layout(page, 'login', 'Log in', body);
}

export function errorPage(page: PageContext, status: number, message: string): string {
  const body = html`<h1>${status === 404 ? 'Not found' : status === 403 ? 'Not allowed' : 'Something went wrong'}</h1><p>${message}</p><p><a href="${page.base}">Back to the repositories</a></p>`;
  return layout(page, 'none', String(status), body);
}

export function repositoryHref(page: PageContext, name: string): string {
  return `${page.base}r/${name.split('/').map(encodeURIComponent).join('/')}`;
}

function imageHref(page: PageContext, name: string, reference: string): string {
  return `${repositoryHref(page, name)}/-/image/${encodeURIComponent(reference)}`;
}

function pullCommands(page: PageContext, reference: string): SafeHtml {
  const lines = [`docker pull ${page.registryHost}/${reference}`, `podman pull ${page.registryHost}/${reference}`];
  return html`<ul class="commands">${lines.map((line) => html`<li><code>${line}</code> ${copyButton(line, `Copy: ${line}`)}</li>`)}</ul>`;
}

/** Hidden until the script shows it: without JavaScript there is nothing to copy with, and the text is selectable. */
function copyButton(text: string, label: string): SafeHtml {
  return html`<button type="button" class="copy" data-copy="${text}" aria-label="${label}" hidden>Copy</button>`;
}

function kindBadge(kind: RepositoryListing['kind']): SafeHtml {
  const text = kind === 'hosted' ? 'hosted' : kind === 'cached' ? 'cached' : 'GHCR';
  return html`<span class="badge badge-${kind}">${text}</span>`;
}

function mediaTypeName(mediaType: string, artifactType?: string): string {
  if (artifactType && !MEDIA_TYPE_NAMES[mediaType]?.endsWith('index')) {
    if (artifactType !== 'application/vnd.oci.image.config.v1+json' && artifactType !== 'application/vnd.docker.container.image.v1+json') {
      return `artifact (${artifactType})`;
    }
  }
  return MEDIA_TYPE_NAMES[mediaType] ?? mediaType;
}

function platformList(platforms: Platform[], link?: (digest: string) => string): SafeHtml {
  if (platforms.length === 0) return html`—`;
  return html`<ul class="plain">${platforms.map((p) => {
    const text = [p.os, p.architecture, p.variant].filter(Boolean).join('/') || 'unknown';
    return html`<li>${link && p.digest ? html`<a href="${link(p.digest)}">${text}</a>` : text}</li>`;
  })}</ul>`;
}

function labelList(labels: Record<string, string>): SafeHtml {
  const entries = Object.entries(labels);
  if (entries.length === 0) return html`—`;
  return html`<details><summary>${count(entries.length, 'label', 'labels')}</summary>${keyValues(labels)}</details>`;
}

function keyValues(values: Record<string, string>): SafeHtml {
  return html`<dl class="pairs">${Object.entries(values).map(([key, value]) => html`<dt>${key}</dt><dd>${String(value)}</dd>`)}</dl>`;
}

function shortDigest(digest: string): string {
  const colon = digest.indexOf(':');
  return `${digest.slice(0, colon + 1)}${digest.slice(colon + 1, colon + 13)}`;
}

function count(n: number, one: string, many: string): string {
  return `${n} ${n === 1 ? one : many}`;
}
