import { findChallenge, parseWwwAuthenticate } from '../../../src/proxy/challenge';

describe('parseWwwAuthenticate', () => {
  test("Docker Hub's Bearer challenge", () => {
    const header =
      'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull"';
    expect(parseWwwAuthenticate(header)).toEqual([
      {
        scheme: 'bearer',
        params: { realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:library/alpine:pull' },
      },
    ]);
  });

  test("distribution's challenge with an error parameter", () => {
    const header =
      'Bearer realm="http://127.0.0.1:5001/token",service="test-registry",scope="repository:foo:pull",error="invalid_token"';
    expect(parseWwwAuthenticate(header)[0].params).toEqual({
      realm: 'http://127.0.0.1:5001/token',
      service: 'test-registry',
      scope: 'repository:foo:pull',
      error: 'invalid_token',
    });
  });

  test('schemes and parameter names are case-insensitive; values keep their case', () => {
    expect(parseWwwAuthenticate('BEARER Realm="https://Auth.Example/Token"')).toEqual([
      { scheme: 'bearer', params: { realm: 'https://Auth.Example/Token' } },
    ]);
    expect(findChallenge(parseWwwAuthenticate('bAsIc realm="x"'), 'Basic')?.params.realm).toBe('x');
  });

  test('quoted strings keep commas, spaces and equals signs', () => {
    const [challenge] = parseWwwAuthenticate('Bearer scope="repository:a:pull,push repository:b:pull",realm="https://x/t?a=b,c"');
    expect(challenge.params).toEqual({ scope: 'repository:a:pull,push repository:b:pull', realm: 'https://x/t?a=b,c' });
  });

  test('escaped quotes and backslashes inside quoted strings', () => {
    const [challenge] = parseWwwAuthenticate('Basic realm="say \\"hi\\" \\\\ bye", charset="UTF-8"');
    expect(challenge.params).toEqual({ realm: 'say "hi" \\ bye', charset: 'UTF-8' });
  });

  test('unquoted token values and whitespace around "=" and ","', () => {
    const [challenge] = parseWwwAuthenticate('Bearer  realm = "https://x/token" ,  service=registry.example , scope=repo');
    expect(challenge.params).toEqual({ realm: 'https://x/token', service: 'registry.example', scope: 'repo' });
  });

  test('several challenges in one header (or several headers joined by ", ")', () => {
    const challenges = parseWwwAuthenticate('Basic realm="registry", Bearer realm="https://auth/token",service="svc"');
    expect(challenges).toEqual([
      { scheme: 'basic', params: { realm: 'registry' } },
      { scheme: 'bearer', params: { realm: 'https://auth/token', service: 'svc' } },
    ]);
    expect(findChallenge(challenges, 'bearer')?.params.service).toBe('svc');
    expect(findChallenge(challenges, 'negotiate')).toBeUndefined();
  });

  test('a token68 challenge, and a scheme without parameters', () => {
    expect(parseWwwAuthenticate('Negotiate abc+/def==, Basic realm="r"')).toEqual([
      { scheme: 'negotiate', params: {}, token68: 'abc+/def==' },
      { scheme: 'basic', params: { realm: 'r' } },
    ]);
    expect(parseWwwAuthenticate('Basic')).toEqual([{ scheme: 'basic', params: {} }]);
  });

  test('empty and malformed headers give what parsed cleanly, without throwing', () => {
    expect(parseWwwAuthenticate('')).toEqual([]);
    expect(parseWwwAuthenticate('   ,  ')).toEqual([]);
    expect(parseWwwAuthenticate('Bearer realm="unterminated')).toEqual([{ scheme: 'bearer', params: {} }]);
    expect(parseWwwAuthenticate('Bearer realm="a", "stray"')).toEqual([{ scheme: 'bearer', params: { realm: 'a' } }]);
  });
});
