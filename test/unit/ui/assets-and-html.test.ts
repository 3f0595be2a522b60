import { ASSETS } from '../../../src/ui/page-routes';
import { formatBytes, html } from '../../../src/ui/html';
import { Sessions } from '../../../src/ui/sessions';

describe('the UI assets', () => {
  test('JS and CSS together stay under 150 KiB gzip-compressed (the README states it)', () => {
    const compressed = Object.values(ASSETS).reduce((sum, asset) => sum + asset.gzipped.length, 0);
    expect(Object.keys(ASSETS).sort()).toEqual(['ui.css', 'ui.js']);
    expect(compressed).toBeLessThan(150 * 1024);
  });

  test('nothing is fetched from another origin', () => {
    for (const asset of Object.values(ASSETS)) expect(asset.body.toString()).not.toMatch(/https?:\/\/|@import|url\(/);
  });
});

describe('html``', () => {
  test('escapes what a pusher wrote (names, labels, history), keeps our markup', () => {
    const label = '<script>alert("x")</script>&\'';
    expect(html`<td>${label}</td>`.text).toBe('<td>&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;</td>');
    expect(html`<ul>${['a<', 'b'].map((item) => html`<li>${item}</li>`)}</ul>`.text).toBe('<ul><li>a&lt;</li><li>b</li></ul>');
    expect(html`${undefined}${null}${false}${0}`.text).toBe('0');
  });

  test('formatBytes', () => {
    expect(formatBytes(1023)).toBe('1023 B');
    expect(formatBytes(1536)).toBe('1.5 KiB');
    expect(formatBytes(5 * 1024 ** 3)).toBe('5.0 GiB');
  });
});

describe('Sessions', () => {
  const ALICE = { user: 'alice', credential: 'hash-1' };
  const unchanged = () => 'hash-1';

  test('a login session names its user until it ends; an anonymous id names no one', () => {
    const sessions = new Sessions();
    const id = sessions.create(ALICE);
    expect(sessions.user(id, unchanged)).toBe('alice');
    expect(sessions.user(sessions.create(), unchanged)).toBeUndefined();
    sessions.end(id);
    expect(sessions.user(id, unchanged)).toBeUndefined();
  });

  test('a session expires after 12 hours', () => {
    const sessions = new Sessions();
    const id = sessions.create(ALICE, 0);
    expect(sessions.user(id, unchanged, 12 * 3_600_000 - 1)).toBe('alice');
    expect(sessions.user(id, unchanged, 12 * 3_600_000)).toBeUndefined();
  });

  test('a session ends for good when its user is removed or gets a new password', () => {
    const sessions = new Sessions();
    const removed = sessions.create(ALICE);
    expect(sessions.user(removed, () => undefined)).toBeUndefined();
    expect(sessions.user(removed, unchanged)).toBeUndefined();
    const newPassword = sessions.create(ALICE);
    expect(sessions.user(newPassword, () => 'hash-2')).toBeUndefined();
    expect(sessions.user(newPassword, unchanged)).toBeUndefined();
  });

  test("the CSRF token matches its own cookie only, and another process's tokens not at all", () => {
    const sessions = new Sessions();
    const one = sessions.create({ user: 'alice', credential: 'hash-1' });
    const other = sessions.create();
    expect(sessions.csrfMatches(one, sessions.csrfToken(one))).toBe(true);
    expect(sessions.csrfMatches(one, sessions.csrfToken(other))).toBe(false);
    expect(sessions.csrfMatches(one, undefined)).toBe(false);
    expect(sessions.csrfMatches(one, new Sessions().csrfToken(one))).toBe(false);
  });
});
