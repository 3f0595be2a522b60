import { MAX_NAME_LENGTH, isValidName, isValidTag } from '../../../src/oci/names';

describe('isValidName (dist-spec: [a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*(\\/[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*)*)', () => {
  test.each([
    'alpine',
    '0',
    'library/alpine',
    'a/b/c/d/e',
    'proxy/docker.io/library/alpine',
    'my_app',
    'my__app',
    'my-app',
    'my---app',
    'my.app',
    'a.b-c_d__e--f',
    'team1/app2',
  ])('accepts %s', (name) => {
    expect(isValidName(name)).toBe(true);
  });

  test.each([
    ['uppercase', 'Alpine'],
    ['uppercase in a later component', 'library/Alpine'],
    ['empty', ''],
    ['leading slash', '/alpine'],
    ['trailing slash', 'alpine/'],
    ['empty component', 'library//alpine'],
    ['leading dash', '-alpine'],
    ['trailing dash', 'alpine-'],
    ['leading dot', '.alpine'],
    ['trailing dot', 'alpine.'],
    ['leading underscore', '_alpine'],
    ['trailing underscore', 'alpine_'],
    ['separator leading a component', 'library/-alpine'],
    ['separator ending a component', 'library_/alpine'],
    ['three underscores', 'my___app'],
    ['two dots', 'my..app'],
    ['mixed separators', 'my._app'],
    ['dot-dot component', 'library/../alpine'],
    ['dot component', 'library/./alpine'],
    ['dot-dot alone', '..'],
    ['a port', '127.0.0.1:5000/alpine'],
    ['a tag', 'alpine:latest'],
    ['a digest', 'alpine@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'],
    ['a space', 'my app'],
    ['a trailing newline', 'alpine\n'],
    ['a backslash', 'library\\alpine'],
    ['non-ASCII', 'caf\u00e9'],
  ])('rejects %s: %j', (_, name) => {
    expect(isValidName(name)).toBe(false);
  });

  test(`limits the whole name to ${MAX_NAME_LENGTH} characters`, () => {
    expect(MAX_NAME_LENGTH).toBe(255);
    expect(isValidName('a'.repeat(255))).toBe(true);
    expect(isValidName('a'.repeat(256))).toBe(false);
    const multi = `${'a'.repeat(100)}/${'b'.repeat(100)}/${'c'.repeat(53)}`;
    expect(multi).toHaveLength(255);
    expect(isValidName(multi)).toBe(true);
    expect(isValidName(`${multi}d`)).toBe(false);
  });

  test('answers quickly on long hostile input', () => {
    const started = Date.now();
    expect(isValidName(`${'a-'.repeat(100_000)}!`)).toBe(false);
    expect(isValidName(`${'a_'.repeat(120)}!`)).toBe(false);
    expect(Date.now() - started).toBeLessThan(1000);
  });
});

describe('isValidTag (dist-spec: [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127})', () => {
  test.each(['latest', 'v1.2.3', 'V1', '_private', '1', '3.20-alpine_x', 'a'.repeat(128), 'sha256-abc.sig'])(
    'accepts %s',
    (tag) => {
      expect(isValidTag(tag)).toBe(true);
    },
  );

  test.each([
    ['empty', ''],
    ['leading dot', '.hidden'],
    ['leading dash', '-v1'],
    ['129 characters', 'a'.repeat(129)],
    ['a colon', 'sha256:abc'],
    ['a slash', 'v1/v2'],
    ['a space', 'v 1'],
    ['a trailing newline', 'v1\n'],
    ['non-ASCII', 'v\u00e9'],
    ['a plus', 'v1+build'],
  ])('rejects %s: %j', (_, tag) => {
    expect(isValidTag(tag)).toBe(false);
  });
});
