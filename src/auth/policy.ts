import { AuthConfig } from '../config/config';

export type Action = 'pull' | 'push' | 'delete';
export const ACTIONS: readonly Action[] = ['pull', 'push', 'delete'];

/** Who is asking: a user from the htpasswd file, or nobody. */
export type Principal = { kind: 'user'; name: string } | { kind: 'anonymous' };

export const ANONYMOUS: Principal = { kind: 'anonymous' };

interface Rule {
  /** Without trailing slash; "" matches every repository. */
  prefix: string;
  allowed: Record<Action, ReadonlySet<string>>;
}

/**
 * Who may pull, push and delete which repositories. The rule with the longest prefix matching a name
 * decides (a prefix matches whole components: "team" and "team/" match team and team/app, not teamwork).
 * Without a matching rule, any logged-in user may do everything and anonymous requests may pull when
 * `anonymous = "pull"`: the reference registry's htpasswd mode. Entries in a rule's lists: user names,
 * group names, "*" (any logged-in user) and "anonymous" (requests without credentials; pull only, and
 * only with `anonymous = "pull"`).
 */
export class AccessPolicy {
  private readonly rules: Rule[];
  private readonly groupsOf = new Map<string, string[]>();

  constructor(private readonly config: Pick<AuthConfig, 'anonymous' | 'groups' | 'rules'>) {
    for (const group of config.groups) {
      for (const member of group.members) this.groupsOf.set(member, [...(this.groupsOf.get(member) ?? []), group.name]);
    }
    this.rules = config.rules
      .map((rule) => ({
        prefix: rule.prefix.replace(/\/+$/, ''),
        allowed: { pull: new Set(rule.pull), push: new Set(rule.push), delete: new Set(rule.delete) },
      }))
      // Longest prefix first; among equal prefixes the first in the file wins (a stable sort keeps file order).
      .sort((a, b) => b.prefix.length - a.prefix.length);
  }

  allows(principal: Principal, action: Action, name: string): boolean {
    if (principal.kind === 'anonymous') {
      if (action !== 'pull' || this.config.anonymous !== 'pull') return false;
      const rule = this.ruleFor(name);
      return rule === undefined || rule.allowed.pull.has('anonymous');
    }
    const rule = this.ruleFor(name);
    if (rule === undefined) return true;
    const entries = rule.allowed[action];
    return entries.has('*') || entries.has(principal.name) || (this.groupsOf.get(principal.name) ?? []).some((group) => entries.has(group));
  }

  /** The actions of `wanted` that the principal may do on `name`. */
  granted(principal: Principal, wanted: readonly Action[], name: string): Action[] {
    return wanted.filter((action) => this.allows(principal, action, name));
  }

  private ruleFor(name: string): Rule | undefined {
    return this.rules.find(({ prefix }) => prefix === '' || name === prefix || name.startsWith(`${prefix}/`));
  }
}
