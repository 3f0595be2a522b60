/**
 * Parses `WWW-Authenticate` (RFC 9110 §11.6.1): one or more challenges, each an auth-scheme followed
 * by either a token68 or comma-separated auth-params whose values are tokens or quoted strings.
 *
 *   Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull"
 *   Basic realm="Registry Realm", Bearer realm="…"   (several challenges in one header, or headers joined by ", ")
 */

export interface AuthChallenge {
  /** Lower-cased: schemes are case-insensitive ("Bearer", "bearer"). */
  scheme: string;
  /** Parameter names lower-cased (also case-insensitive); values unquoted and unescaped. */
  params: Record<string, string>;
  /** The token68 form (`Negotiate abc==`), when the challenge has one instead of params. */
  token68?: string;
}

// RFC 9110 tchar
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+/;

/** Every challenge in the header, in order; malformed trailing input is ignored rather than thrown on. */
export function parseWwwAuthenticate(header: string): AuthChallenge[] {
  const challenges: AuthChallenge[] = [];
  let rest = header;
  let current: AuthChallenge | undefined;

  while (true) {
    rest = rest.replace(/^[\s,]+/, '');
    if (rest === '') break;
    const token = TOKEN.exec(rest);
    if (!token) break;
    const afterToken = rest.slice(token[0].length);

    // `name =` is an auth-param of the current challenge; a token followed by anything else starts a new one.
    const equals = /^\s*=\s*/.exec(afterToken);
    if (current && equals) {
      rest = afterToken.slice(equals[0].length);
      const value = readValue();
      if (value === undefined) break;
      current.params[token[0].toLowerCase()] = value;
      continue;
    }

    current = { scheme: token[0].toLowerCase(), params: {} };
    challenges.push(current);
    rest = afterToken;
    // A token68 after the scheme (`Negotiate abc==`) stands alone up to the next comma; `realm="x"` or
    // `realm=x` do not match because something other than a comma follows their '='.
    const token68 = /^ +([A-Za-z0-9\-._~+/]+=*)\s*(?=,|$)/.exec(rest);
    if (token68) {
      current.token68 = token68[1];
      rest = rest.slice(token68[0].length);
    }
  }
  return challenges;

  /** A token or a quoted-string (with `\x` escapes) at the start of `rest`. */
  function readValue(): string | undefined {
    if (rest.startsWith('"')) {
      let value = '';
      for (let i = 1; i < rest.length; i++) {
        const char = rest[i];
        if (char === '\\' && i + 1 < rest.length) {
          value += rest[++i];
        } else if (char === '"') {
          rest = rest.slice(i + 1);
          return value;
        } else {
          value += char;
        }
      }
      return undefined; // unterminated quoted-string
    }
    const token = TOKEN.exec(rest);
    if (!token) return '';
    rest = rest.slice(token[0].length);
    return token[0];
  }
}

/** The first challenge with the given scheme (case-insensitive), if any. */
export function findChallenge(challenges: AuthChallenge[], scheme: string): AuthChallenge | undefined {
  const wanted = scheme.toLowerCase();
  return challenges.find((challenge) => challenge.scheme === wanted);
}
