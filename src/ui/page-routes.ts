import Router from '@koa/router';
import { Context } from 'koa';
import { createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { recordCaller } from '../http/middleware/authorize';
import { single } from '../http/request';
import { RegistryError } from '../oci/errors';
import { readAtMost } from '../streams';
import { SCRIPT } from './assets/script';
import { STYLE } from './assets/style';
import {
  cachePage,
  deleteConfirmPage,
  errorPage,
  gcConfirmPage,
  imagePage,
  loginPage,
  PageContext,
  repositoryHref,
  repositoryListPage,
  repositoryPage,
  storagePage,
} from './pages';
import { formatBytes } from './html';
import { sendText } from './compression';
import { SESSION_COOKIE } from './sessions';
import { UiDependencies } from './ui-dependencies';
import { identify, requireSameSiteAction, Viewer } from './viewer';

/** A login form or an action's form is a few hundred bytes; anything much larger is not ours. */
const MAX_FORM_BYTES = 16 * 1024;

/** Served from memory, gzip'd once; the name carries no hash, so browsers revalidate with the ETag. */
interface Asset {
  type: string;
  body: Buffer;
  gzipped: Buffer;
  etag: string;
}

function asset(type: string, text: string): Asset {
  const body = Buffer.from(text);
  return { type, body, gzipped: gzipSync(body, { level: 9 }), etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 16)}"` };
}

export const ASSETS: Readonly<Record<string, Asset>> = {
  'ui.css': asset('text/css; charset=utf-8', STYLE),
  'ui.js': asset('text/javascript; charset=utf-8', SCRIPT),
};

/** The pages under `[ui] path`: server-rendered HTML, forms for every action, the script only adding to them. */
export function pageRoutes(router: Router, dependencies: UiDependencies): void {
  const { catalog, access, sessions, config, log } = dependencies;
  const base = config.ui.path;

  /** Runs a page: who is asking, the cookie and CSRF token, and errors as HTML pages (or a login when that is what is missing). */
  const page =
    (render: (ctx: Context, pageContext: PageContext) => Promise<string | void>) =>
    async (ctx: Context): Promise<void> => {
      const pageContext = await pageContextOf(ctx);
      try {
        const body = await render(ctx, pageContext);
        if (body !== undefined) await sendHtml(ctx, 200, body);
      } catch (error) {
        if (!(error instanceof RegistryError)) {
          log.error('page failed', { path: ctx.path, error: error instanceof Error ? (error.stack ?? error.message) : String(error) });
        }
        const registryError = error instanceof RegistryError ? error : new RegistryError('UNKNOWN');
        if (registryError.status === 401 && access && !pageContext.viewer.user) {
          ctx.redirect(`${base}login?next=${encodeURIComponent(ctx.originalUrl)}`);
          return;
        }
        await sendHtml(ctx, registryError.status, errorPage(pageContext, registryError.status, registryError.message));
      }
    };

  async function pageContextOf(ctx: Context): Promise<PageContext> {
    let viewer: Viewer;
    try {
      viewer = await identify(ctx, access, sessions);
    } catch (error) {
      // A page never needs an Authorization header: a bad one (a browser's cached Basic login) counts as none.
      if (!(error instanceof RegistryError) || error.status !== 401) throw error;
      ctx.headers.authorization = '';
      viewer = await identify(ctx, access, sessions);
    }
    let cookie = viewer.cookie;
    if (cookie === undefined) {
      cookie = sessions.create();
      setSessionCookie(ctx, cookie);
      viewer = { ...viewer, cookie };
    }
    const notice = single(ctx.query.notice);
    return {
      base,
      viewer,
      csrf: sessions.csrfToken(cookie),
      registryHost: config.public_url ? new URL(config.public_url).host : ctx.host,
      loginPossible: access !== null,
      notice: notice ? notice.slice(0, 200) : undefined,
    };
  }

  /** Forms post back here: same-site only, with the CSRF token; the form's fields otherwise. */
  async function actionForm(ctx: Context, pageContext: PageContext): Promise<URLSearchParams> {
    const form = await readForm(ctx);
    requireSameSiteAction(ctx, pageContext.viewer, sessions, config.public_url, form.get('csrf') ?? undefined);
    return form;
  }

  function setSessionCookie(ctx: Context, value: string): void {
    // Strict: the browser sends it only on requests from our own pages, which is half of the CSRF defence.
    ctx.cookies.set(SESSION_COOKIE, value, { httpOnly: true, sameSite: 'strict', path: '/', secure: ctx.secure, overwrite: true, signed: false });
  }

  function afterAction(ctx: Context, to: string, notice: string): void {
    ctx.redirect(`${to}${to.includes('?') ? '&' : '?'}notice=${encodeURIComponent(notice)}`);
  }

  router.get(`${base}assets/:file`, (ctx) => {
    const file = ASSETS[ctx.params.file];
    if (!file) throw new RegistryError('UNSUPPORTED', { status: 404, message: `no asset ${ctx.params.file}` });
    ctx.set({ ETag: file.etag, 'Cache-Control': 'no-cache', Vary: 'Accept-Encoding' });
    ctx.type = file.type;
    if (ctx.fresh) {
      ctx.status = 304;
      return;
    }
    if (ctx.acceptsEncodings('gzip', 'identity') === 'gzip') {
      ctx.set('Content-Encoding', 'gzip');
      ctx.body = file.gzipped;
    } else {
      ctx.body = file.body;
    }
  });

  router.get(
    base,
    page(async (ctx, pageContext) => {
      const query = single(ctx.query.q) ?? '';
      return repositoryListPage(pageContext, await catalog.repositories(pageContext.viewer, query), query);
    }),
  );

  router.get(
    `${base}login`,
    page(async (ctx, pageContext) => {
      if (!access || pageContext.viewer.user) return void ctx.redirect(localNext(single(ctx.query.next)));
      return loginPage(pageContext, localNext(single(ctx.query.next)), undefined);
    }),
  );

  router.post(
    `${base}login`,
    page(async (ctx, pageContext) => {
      const form = await actionForm(ctx, pageContext);
      const next = localNext(form.get('next') ?? undefined);
      if (!access) return void ctx.redirect(next);
      const credentials = Buffer.from(`${form.get('username') ?? ''}:${form.get('password') ?? ''}`).toString('base64');
      const user = (form.get('username') ?? '') === '' ? { ok: false as const, throttled: false as const } : await access.verifyBasic(credentials, ctx.ip);
      if (typeof user !== 'string' || user === '') {
        const throttled = typeof user !== 'string' && user.throttled;
        ctx.status = throttled ? 429 : 401;
        const message = throttled ? 'Too many failed logins from this address; try again in a minute.' : 'Wrong user or password.';
        return void (await sendHtml(ctx, ctx.status, loginPage(pageContext, next, message)));
      }
      // A new id at login: a cookie someone planted before it is worth nothing after it.
      sessions.end(pageContext.viewer.cookie);
      const credential = access.credentialStamp(user);
      if (credential === undefined) throw new RegistryError('UNAUTHORIZED', { message: 'that user was just removed' });
      setSessionCookie(ctx, sessions.create({ user, credential }));
      // The request log names who logged in, not the anonymous browser that sent the form.
      recordCaller(ctx, { principal: { kind: 'user', name: user }, presented: true });
      ctx.redirect(next);
    }),
  );

  router.post(
    `${base}logout`,
    page(async (ctx, pageContext) => {
      await actionForm(ctx, pageContext);
      sessions.end(pageContext.viewer.cookie);
      setSessionCookie(ctx, sessions.create());
      ctx.redirect(base);
    }),
  );

  router.get(
    `${base}cache`,
    page(async (_ctx, pageContext) => cachePage(pageContext, await catalog.cache(pageContext.viewer))),
  );

  router.get(
    `${base}storage`,
    page(async (_ctx, pageContext) => storagePage(pageContext, await catalog.storage(pageContext.viewer))),
  );

  router.post(
    `${base}storage/gc-dry-run`,
    page(async (ctx, pageContext) => {
      await actionForm(ctx, pageContext);
      const report = await catalog.gcDryRun(pageContext.viewer);
      return storagePage(pageContext, await catalog.storage(pageContext.viewer), report);
    }),
  );

  router.get(
    `${base}storage/gc`,
    page(async (_ctx, pageContext) => {
      if (!pageContext.viewer.mayCollect) throw new RegistryError('DENIED', { message: 'garbage collection needs the delete right on the "" prefix' });
      return gcConfirmPage(pageContext);
    }),
  );

  router.post(
    `${base}storage/gc`,
    page(async (ctx, pageContext) => {
      await actionForm(ctx, pageContext);
      const report = await catalog.collectGarbage(pageContext.viewer);
      afterAction(
        ctx,
        `${base}storage`,
        `Garbage collection freed ${formatBytes(report.bytesFreed)}: ${report.manifests.length} manifests, ${report.blobs.length} files, ${report.uploadsExpired} expired uploads.`,
      );
    }),
  );

  router.get(
    `${base}r/*name/-/image/:reference`,
    page(async (ctx, pageContext) => imagePage(pageContext, await catalog.image(pageContext.viewer, ctx.params.name, ctx.params.reference))),
  );

  router.get(
    `${base}r/*name/-/delete/:reference`,
    page(async (ctx, pageContext) => {
      const { name, reference } = ctx.params;
      const view = await catalog.repository(pageContext.viewer, name);
      if (!view.mayDelete) throw new RegistryError('DENIED', { message: `you may not delete in ${name}` });
      return deleteConfirmPage(pageContext, name, reference, view.repository.kind !== 'hosted');
    }),
  );

  router.post(
    `${base}r/*name/-/delete/:reference`,
    page(async (ctx, pageContext) => {
      await actionForm(ctx, pageContext);
      const { name, reference } = ctx.params;
      await catalog.delete(pageContext.viewer, name, reference);
      afterAction(ctx, repositoryHref(pageContext, name), `${name.startsWith('proxy/') ? 'Evicted' : 'Deleted'} ${reference}.`);
    }),
  );

  router.post(
    `${base}r/*name/-/pin/:tag`,
    page(async (ctx, pageContext) => {
      await actionForm(ctx, pageContext);
      const { name, tag } = ctx.params;
      const { created } = await catalog.pin(pageContext.viewer, name, tag);
      afterAction(ctx, repositoryHref(pageContext, name), created ? `Pinned ${tag}: eviction never removes it.` : `${tag} was pinned already.`);
    }),
  );

  router.post(
    `${base}r/*name/-/unpin/:reference`,
    page(async (ctx, pageContext) => {
      const form = await actionForm(ctx, pageContext);
      const { name, reference } = ctx.params;
      await catalog.unpin(pageContext.viewer, name, reference);
      afterAction(ctx, form?.get('next') === 'cache' ? `${base}cache` : repositoryHref(pageContext, name), `Unpinned ${reference}.`);
    }),
  );

  router.post(
    `${base}r/*name/-/evict`,
    page(async (ctx, pageContext) => {
      await actionForm(ctx, pageContext);
      const evicted = await catalog.evict(pageContext.viewer, ctx.params.name);
      afterAction(ctx, `${base}cache`, `Evicted ${evicted} manifest${evicted === 1 ? '' : 's'} of ${ctx.params.name}.`);
    }),
  );

  router.get(
    `${base}r/*name`,
    page(async (ctx, pageContext) => repositoryPage(pageContext, await catalog.repository(pageContext.viewer, ctx.params.name))),
  );

  /** Only a path of ours: never an open redirect to another site. */
  function localNext(next: string | undefined): string {
    return next && next.startsWith(base) && !next.startsWith('//') && !/[\\\r\n]/.test(next) ? next : base;
  }
}

/** A page: compressed when large (compression.ts), never cached (it shows what the viewer may see now). */
async function sendHtml(ctx: Context, status: number, body: string): Promise<void> {
  ctx.set('Cache-Control', 'no-store');
  await sendText(ctx, body, 'text/html; charset=utf-8');
  ctx.status = status;
}

async function readForm(ctx: Context): Promise<URLSearchParams> {
  if (!ctx.is('application/x-www-form-urlencoded')) {
    throw new RegistryError('UNSUPPORTED', { status: 415, message: 'expected a form (application/x-www-form-urlencoded)' });
  }
  const body = await readAtMost(ctx.req, MAX_FORM_BYTES);
  if (body === undefined) throw new RegistryError('UNSUPPORTED', { status: 413, message: 'form too large' });
  return new URLSearchParams(body.toString('utf8'));
}
