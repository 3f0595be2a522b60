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
  test('a login session names its user until it ends; an anonymous id names no one', () => {
    const sessions = new Sessions();
    const id = sessions.create('alice');
    expect(sessions.user(id)).toBe('alice');
    expect(sessions.user(sessions.create())).toBeUndefined();
    sessions.end(id);
    expect(sessions.user(id)).toBeUndefined();
  });

  test('a session expires after 12 hours', () => {
    const sessions = new Sessions();
    const id = sessions.create('alice', 0);
    expect(sessions.user(id, 12 * 3_600_000 - 1)).toBe('alice');
    expect(sessions.user(id, 12 * 3_600_000)).toBeUndefined();
  });

  test("the CSRF token matches its own cookie only, and another process's tokens not at all", () => {
    const sessions = new Sessions();
    const one = sessions.create('alice');
    const other = sessions.create();
    expect(sessions.csrfMatches(one, sessions.csrfToken(one))).toBe(true);
    expect(sessions.csrfMatches(one, sessions.csrfToken(other))).toBe(false);
    expect(sessions.csrfMatches(one, undefined)).toBe(false);
    expect(sessions.csrfMatches(one, new Sessions().csrfToken(one))).toBe(false);
  });
});
