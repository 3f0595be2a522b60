// dist-spec: <name> is path components of [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)* separated by "/".
const NAME_GRAMMAR = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$/;
// dist-spec: a tag is at most 128 characters of [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}.
const TAG_GRAMMAR = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/;

/** The reference registry's limit on a whole repository name. */
export const MAX_NAME_LENGTH = 255;

export function isValidName(name: string): boolean {
  return name.length <= MAX_NAME_LENGTH && NAME_GRAMMAR.test(name);
}

export function isValidTag(tag: string): boolean {
  return TAG_GRAMMAR.test(tag);
}
