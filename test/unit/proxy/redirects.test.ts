import { redirectTarget, UpstreamAnswerError, UpstreamRefusedError } from '../../../src/proxy/upstream-client';

describe('redirectTarget: where an upstream may send the cache', () => {
  const registry = new URL('https://registry.example/v2/team/app/blobs/sha256:abc');

  test('https to https elsewhere (a CDN) and relative locations are followed', () => {
    expect(redirectTarget(registry, 'https://cdn.example/signed?sig=1', 'https://registry.example').href).toBe(
      'https://cdn.example/signed?sig=1',
    );
    expect(redirectTarget(registry, '/v2/other', 'https://registry.example').href).toBe('https://registry.example/v2/other');
  });

  test('https to http is refused for an upstream configured with https', () => {
    expect(() => redirectTarget(registry, 'http://cdn.example/blob', 'https://registry.example')).toThrow(UpstreamRefusedError);
    expect(() => redirectTarget(registry, 'http://cdn.example/blob', 'https://registry.example')).toThrow(
      'upstream cdn.example is not allowed: a redirect from https to http',
    );
  });

  test('an upstream configured with http may redirect to http', () => {
    const plain = new URL('http://harbor.lan/v2/a/blobs/sha256:abc');
    expect(redirectTarget(plain, 'http://minio.lan/blob', 'http://harbor.lan').href).toBe('http://minio.lan/blob');
    // Its https hops (after an upgrade) may come back down to http too: the operator chose http.
    expect(redirectTarget(new URL('https://harbor.lan/x'), 'http://harbor.lan/y', 'http://harbor.lan').href).toBe('http://harbor.lan/y');
  });

  test('anything but http(s), or no URL at all, is refused', () => {
    expect(() => redirectTarget(registry, 'file:///etc/passwd', 'https://registry.example')).toThrow(UpstreamRefusedError);
    expect(() => redirectTarget(registry, 'gopher://127.0.0.1:6379/_', 'https://registry.example')).toThrow(UpstreamRefusedError);
    expect(() => redirectTarget(registry, 'http://[::1', 'https://registry.example')).toThrow(UpstreamAnswerError);
  });
});
