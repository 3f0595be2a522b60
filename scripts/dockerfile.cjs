// The Dockerfile as data, for scripts/dockerfile-mirror.mjs and its unit tests: parse the instructions,
// work out each stage's image configuration (ENV, WORKDIR, USER, VOLUME, …), check the requirements of
// issue #8, classify RUN steps that act on the operating system, and match .dockerignore patterns.
// CommonJS so that the jest tests (CommonJS through @swc/jest) can require it.
'use strict';

/** Instructions the mirror understands; any other one fails the parse, so a new line cannot rot unnoticed. */
const KNOWN = new Set(['FROM', 'WORKDIR', 'ENV', 'COPY', 'RUN', 'USER', 'VOLUME', 'EXPOSE', 'HEALTHCHECK', 'ENTRYPOINT', 'CMD']);

class DockerfileError extends Error {}

/** Joins continuation lines, drops comments and blank lines: one entry per instruction with its first line. */
function logicalLines(text) {
  const lines = text.split(/\r?\n/);
  const result = [];
  let current = null;
  for (let index = 0; index < lines.length; index++) {
    const line = lines[index];
    if (/^\s*#\s*escape\s*=/i.test(line) && current === null && result.length === 0) {
      if (!/=\s*\\\s*$/.test(line)) throw new DockerfileError(`line ${index + 1}: only the default escape character \\ is understood`);
      continue;
    }
    // Docker drops comment and empty lines even inside a continued instruction.
    if (/^\s*#/.test(line) || (current !== null && line.trim() === '')) continue;
    if (current === null && line.trim() === '') continue;
    const continued = /\\\s*$/.test(line);
    const body = continued ? line.replace(/\\\s*$/, '') : line;
    if (current === null) current = { line: index + 1, text: body.trimStart() };
    else current.text += body;
    if (!continued) {
      result.push(current);
      current = null;
    }
  }
  if (current !== null) throw new DockerfileError(`line ${current.line}: the instruction ends with a line continuation`);
  return result;
}

/** `["a", "b"]` → ['a', 'b']; anything else → null (Docker then runs the text as a shell command). */
function execForm(args) {
  if (!args.startsWith('[')) return null;
  try {
    const value = JSON.parse(args);
    if (Array.isArray(value) && value.length > 0 && value.every((item) => typeof item === 'string')) return value;
  } catch {
    // fall through
  }
  return null;
}

/** Leading `--name=value` flags of an instruction, and the rest. */
function takeFlags(args) {
  const flags = {};
  let rest = args;
  for (;;) {
    const match = /^--([a-z-]+)(?:=(\S*))?\s*/.exec(rest);
    if (!match) return { flags, rest };
    flags[match[1]] = match[2] ?? true;
    rest = rest.slice(match[0].length);
  }
}

// Stands for a `$` that was escaped or single-quoted, so variable substitution leaves it alone.
const LITERAL_DOLLAR = '\u0000';

/** Splits words the way Docker does for ENV/COPY/VOLUME: whitespace-separated, with quotes and backslash escapes. */
function words(text) {
  const result = [];
  let word = null;
  let quote = null;
  for (let i = 0; i < text.length; i++) {
    const char = text[i];
    if (quote) {
      if (char === quote) quote = null;
      else if (char === '\\' && quote === '"' && i + 1 < text.length) word += literal(text[++i]);
      else word += quote === "'" ? literal(char) : char;
    } else if (char === '"' || char === "'") {
      quote = char;
      word ??= '';
    } else if (char === '\\' && i + 1 < text.length) {
      word = (word ?? '') + literal(text[++i]);
    } else if (/\s/.test(char)) {
      if (word !== null) result.push(word);
      word = null;
    } else {
      word = (word ?? '') + char;
    }
  }
  if (quote) throw new DockerfileError(`unterminated ${quote} in ${JSON.stringify(text)}`);
  if (word !== null) result.push(word);
  return result;
}

function literal(char) {
  return char === '$' ? LITERAL_DOLLAR : char;
}

/** Words with their variables substituted, as ENV, COPY, VOLUME and EXPOSE take them. */
function expandedWords(text, env, where) {
  return words(text).map((word) => substitute(word, env, where).replaceAll(LITERAL_DOLLAR, '$'));
}

/** Docker's variable substitution ($VAR, ${VAR}, ${VAR:-default}, ${VAR:+alternative}) from a stage's ENV. */
function substitute(text, env, where) {
  return text.replace(/\\\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::([-+])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)/g, (match, braced, operator, word, bare) => {
    if (match === '\\$') return '$';
    const name = braced ?? bare;
    const value = env[name];
    if (operator === '-') return value ? value : word;
    if (operator === '+') return value ? word : '';
    if (value === undefined) throw new DockerfileError(`${where}: $${name} is not set by an ENV of this stage (the base image's variables are unknown here)`);
    return value;
  });
}

/** Parses the Dockerfile into stages of instructions, without evaluating them. */
function parseDockerfile(text) {
  const stages = [];
  for (const { line, text: source } of logicalLines(text)) {
    const match = /^(\S+)\s*([\s\S]*)$/.exec(source);
    const keyword = match[1].toUpperCase();
    const args = match[2].trim();
    const where = `line ${line} (${keyword})`;
    if (!KNOWN.has(keyword)) {
      throw new DockerfileError(`${where}: the mirror does not understand ${keyword}; teach scripts/dockerfile.cjs and scripts/dockerfile-mirror.mjs what it means before using it`);
    }
    if (/^<<-?["']?[A-Za-z_]/.test(takeFlags(args).rest)) throw new DockerfileError(`${where}: heredocs are not understood by the mirror`);
    if (args === '') throw new DockerfileError(`${where}: no arguments`);
    if (keyword === 'FROM') {
      const { flags, rest } = takeFlags(args);
      if (Object.keys(flags).length > 0) throw new DockerfileError(`${where}: flags ${Object.keys(flags).map((f) => `--${f}`).join(', ')} are not understood`);
      const from = /^(\S+)(?:\s+AS\s+([A-Za-z0-9][A-Za-z0-9_.-]*))?$/i.exec(rest);
      if (!from) throw new DockerfileError(`${where}: expected FROM <image> [AS <name>], got ${JSON.stringify(rest)}`);
      const base = from[1];
      const previous = stages.find((stage) => stage.name === base.toLowerCase());
      stages.push({ index: stages.length, name: from[2]?.toLowerCase() ?? null, base, baseStage: previous ? previous.index : null, line, instructions: [] });
      continue;
    }
    if (stages.length === 0) throw new DockerfileError(`${where}: comes before the first FROM`);
    stages.at(-1).instructions.push({ keyword, args, line, where });
  }
  if (stages.length === 0) throw new DockerfileError('no FROM: not a Dockerfile');
  return { stages };
}

function parseDuration(text, where) {
  let total = 0;
  const pattern = /(\d+(?:\.\d+)?)(ms|s|m|h)/g;
  let consumed = '';
  for (const [whole, amount, unit] of text.matchAll(pattern)) {
    total += Number(amount) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[unit];
    consumed += whole;
  }
  if (consumed !== text || text === '') throw new DockerfileError(`${where}: ${JSON.stringify(text)} is not a duration such as 30s or 1m30s`);
  return total;
}

function parseHealthcheck(args, where) {
  const { flags, rest } = takeFlags(args);
  if (/^NONE$/i.test(rest)) return { none: true };
  const cmd = /^CMD\s+([\s\S]+)$/i.exec(rest);
  if (!cmd) throw new DockerfileError(`${where}: expected HEALTHCHECK [options] CMD … or HEALTHCHECK NONE`);
  // Docker's defaults: https://docs.docker.com/reference/dockerfile/#healthcheck
  const options = { interval: 30_000, timeout: 30_000, 'start-period': 0, 'start-interval': 5_000, retries: 3 };
  for (const [name, value] of Object.entries(flags)) {
    if (!(name in options)) throw new DockerfileError(`${where}: --${name} is not a HEALTHCHECK option`);
    options[name] = name === 'retries' ? Number(value) : parseDuration(String(value), where);
  }
  return { none: false, options, ...command(cmd[1], where) };
}

/** A CMD/ENTRYPOINT/RUN/HEALTHCHECK command: exec form (argv) or shell form (text for sh -c). */
function command(args, where) {
  const argv = execForm(args);
  if (argv) return { form: 'exec', argv };
  if (args.startsWith('[')) {
    throw new DockerfileError(`${where}: ${args} looks like exec form but is not a JSON array of strings (Docker would silently run it through a shell)`);
  }
  return { form: 'shell', text: args };
}

/** ENV arguments: `K=V K2="v 2"`, or the legacy single `K V`. */
function parseEnv(args, env, where) {
  const first = /^(\S+)/.exec(args)[1];
  if (!first.includes('=')) {
    const legacy = /^(\S+)\s+([\s\S]*)$/.exec(args);
    if (!legacy) throw new DockerfileError(`${where}: ENV ${first} has no value`);
    return [[legacy[1], substitute(legacy[2], env, where)]];
  }
  return expandedWords(args, env, where).map((word) => {
    const at = word.indexOf('=');
    if (at <= 0) throw new DockerfileError(`${where}: ${JSON.stringify(word)} is not NAME=value`);
    return [word.slice(0, at), word.slice(at + 1)];
  });
}

function resolvePath(workdir, target) {
  const path = require('node:path').posix;
  return path.resolve(workdir, target);
}

/**
 * Evaluates every stage's image configuration in order. Each instruction becomes a step; those that
 * change files (WORKDIR, COPY, RUN) carry the stage state they run with.
 */
function evaluate(parsed) {
  const stages = [];
  for (const stage of parsed.stages) {
    const inherited = stage.baseStage === null ? null : stages[stage.baseStage].config;
    const config = inherited
      ? structuredClone(inherited)
      : { env: {}, workdir: '/', user: null, volumes: [], expose: [], healthcheck: null, entrypoint: null, cmd: null };
    let cmdSet = false;
    const steps = [];
    for (const instruction of stage.instructions) {
      const { keyword, args, where } = instruction;
      const step = { ...instruction, stage: stage.name ?? String(stage.index) };
      switch (keyword) {
        case 'WORKDIR':
          config.workdir = resolvePath(config.workdir, substitute(args, config.env, where));
          Object.assign(step, { workdir: config.workdir, user: config.user });
          break;
        case 'ENV':
          for (const [name, value] of parseEnv(args, config.env, where)) config.env[name] = value;
          break;
        case 'USER':
          config.user = substitute(args, config.env, where);
          break;
        case 'VOLUME': {
          const list = execForm(args) ?? expandedWords(args, config.env, where);
          config.volumes.push(...list.map((volume) => resolvePath('/', volume)));
          break;
        }
        case 'EXPOSE':
          for (const word of expandedWords(args, config.env, where)) {
            const port = /^(\d+)(?:\/(tcp|udp))?$/.exec(word);
            if (!port) throw new DockerfileError(`${where}: ${JSON.stringify(word)} is not <port>[/tcp|udp]`);
            config.expose.push({ port: Number(port[1]), protocol: port[2] ?? 'tcp' });
          }
          break;
        case 'HEALTHCHECK':
          config.healthcheck = parseHealthcheck(args, where);
          break;
        case 'ENTRYPOINT':
          config.entrypoint = command(args, where);
          // Docker: ENTRYPOINT resets a CMD inherited from the base image, not one set earlier in this stage.
          if (!cmdSet) config.cmd = null;
          break;
        case 'CMD':
          config.cmd = command(args, where);
          cmdSet = true;
          break;
        case 'COPY': {
          const { flags, rest } = takeFlags(args);
          for (const flag of Object.keys(flags)) {
            if (flag !== 'from' && flag !== 'chown') throw new DockerfileError(`${where}: COPY --${flag} is not understood by the mirror`);
          }
          const list = execForm(rest)?.map((word) => substitute(word, config.env, where)) ?? expandedWords(rest, config.env, where);
          if (list.length < 2) throw new DockerfileError(`${where}: COPY needs a source and a destination`);
          const sources = list.slice(0, -1);
          const rawDestination = list.at(-1);
          if (sources.some((source) => /[*?[]/.test(source))) throw new DockerfileError(`${where}: wildcards in COPY sources are not understood by the mirror`);
          if (sources.length > 1 && !rawDestination.endsWith('/')) throw new DockerfileError(`${where}: with several sources the destination must end with /`);
          let from = null;
          if (flags.from !== undefined) {
            const name = String(flags.from).toLowerCase();
            const source = stages.find((earlier) => earlier.name === name || String(earlier.index) === name);
            if (!source) throw new DockerfileError(`${where}: --from=${flags.from} names no earlier stage (copying from other images is not understood)`);
            from = source.index;
          }
          const destination = resolvePath(config.workdir, rawDestination) + (rawDestination.endsWith('/') ? '/' : '');
          Object.assign(step, { from, sources, destination, chown: flags.chown ?? null, user: config.user });
          break;
        }
        case 'RUN': {
          const { flags, rest } = takeFlags(args);
          if (Object.keys(flags).length > 0) throw new DockerfileError(`${where}: RUN flags are not understood by the mirror`);
          Object.assign(step, { command: command(rest, where), env: { ...config.env }, workdir: config.workdir, user: config.user });
          break;
        }
      }
      steps.push(step);
    }
    stages.push({ ...stage, config, steps });
  }
  return stages;
}

// Node.js release lines and their end of life (https://github.com/nodejs/Release#release-schedule).
const NODE_LTS_END_OF_LIFE = { 18: '2025-04-30', 20: '2026-04-30', 22: '2027-04-30', 24: '2028-04-30', 26: '2029-04-30' };

/** `node:26-trixie-slim` (optionally docker.io/library/, a full version, an @sha256 pin) → its parts, or null. */
function nodeImage(reference) {
  const match = /^(?:(?:docker\.io\/)?library\/)?node:(\d+)(?:\.\d+){0,2}-(?:([a-z]+)-)?slim(?:@sha256:[0-9a-f]{64})?$/.exec(reference);
  return match ? { major: Number(match[1]), variant: match[2] ?? null } : null;
}

const STORAGE_VARIABLES = ['REGISTRY_REGISTRY_STORAGE', 'REGISTRY_TEMPORARY_REGISTRY_STORAGE', 'REGISTRY_PROXY_STORAGE', 'REGISTRY_DATABASE'];

/**
 * The requirements of issue #8 on the Dockerfile. Returns the problems, each naming the instruction
 * concerned, and what was found; an empty `problems` means it complies.
 */
function checkRequirements(stages, { today = new Date().toISOString().slice(0, 10) } = {}) {
  const problems = [];
  const found = [];
  const external = stages.filter((stage) => stage.baseStage === null);
  // Once per image: stages that share a base share its problems.
  for (const stage of external.filter((stage, index) => external.findIndex((other) => other.base === stage.base) === index)) {
    const image = nodeImage(stage.base);
    const line = `FROM ${stage.base} (line ${stage.line})`;
    if (!image) {
      problems.push(`${line}: the base image must be node:<LTS major>-<debian>-slim, e.g. node:26-trixie-slim`);
      continue;
    }
    const endOfLife = NODE_LTS_END_OF_LIFE[image.major];
    const newest = Math.max(...Object.keys(NODE_LTS_END_OF_LIFE).map(Number));
    if (image.major % 2 !== 0) problems.push(`${line}: Node ${image.major} is not an LTS line (odd majors never are)`);
    else if (endOfLife && endOfLife < today) problems.push(`${line}: Node ${image.major} reached its end of life on ${endOfLife}; move to a current LTS line`);
    else if (!endOfLife && image.major < newest) problems.push(`${line}: Node ${image.major} is not a supported LTS line`);
    else found.push(`${stage.base}${endOfLife ? ` (Node ${image.major} LTS, supported until ${endOfLife})` : ` (Node ${image.major}: newer than the mirror's table)`}`);
  }
  // The build stage's native modules (better-sqlite3) are compiled against its Node and libc.
  if (new Set(external.map((stage) => stage.base)).size > 1) {
    problems.push(`FROM: the stages use different base images (${[...new Set(external.map((stage) => stage.base))].join(', ')}); native modules built in one do not load in another`);
  }
  const runtime = stages.at(-1);
  const label = `the runtime stage (FROM ${runtime.base}, line ${runtime.line})`;
  const copiesFromStage = runtime.steps.some((step) => step.keyword === 'COPY' && step.from !== null);
  if (stages.length < 2 || !copiesFromStage) problems.push(`multi-stage: ${label} must COPY --from a build stage, so build tools stay out of the image`);
  else found.push(`${stages.length} stages`);

  const { config } = runtime;
  const user = config.user === null ? null : config.user.split(':')[0];
  if (user === null) problems.push(`USER: ${label} has no USER, so the image would run as root`);
  else if (user === 'root' || user === '0') problems.push(`USER: ${label} runs as ${config.user}; use a non-root user such as node`);
  else found.push(`USER ${config.user}`);

  if (!config.volumes.includes('/storage')) problems.push(`VOLUME: ${label} has no VOLUME /storage`);
  else found.push('VOLUME /storage');

  if (config.env.REGISTRY_HOST !== '0.0.0.0') {
    problems.push(`ENV: ${label} must set REGISTRY_HOST=0.0.0.0 (the registry listens on 127.0.0.1 by default, unreachable from outside a container); found ${config.env.REGISTRY_HOST ?? 'none'}`);
  } else found.push('REGISTRY_HOST=0.0.0.0');
  if (config.env.NODE_ENV !== 'production') problems.push(`ENV: ${label} must set NODE_ENV=production; found ${config.env.NODE_ENV ?? 'none'}`);
  const volumes = config.volumes.map((volume) => volume.replace(/\/$/, ''));
  for (const name of volumes.length > 0 ? STORAGE_VARIABLES : []) {
    const value = config.env[name];
    if (!value || !volumes.some((volume) => value === volume || value.startsWith(`${volume}/`))) {
      problems.push(`ENV: ${label} must set ${name} to a path under a VOLUME (found ${value ?? 'none'}): the default is relative to WORKDIR, inside the container and not writable by its user`);
    }
  }

  if (!config.entrypoint) problems.push(`ENTRYPOINT: ${label} has none (the base image's docker-entrypoint.sh would run)`);
  else if (config.entrypoint.form !== 'exec') problems.push(`ENTRYPOINT: ${label} uses shell form; use exec form (JSON array), so the registry is PID 1 and receives SIGTERM`);
  else found.push(`ENTRYPOINT ${JSON.stringify(config.entrypoint.argv)}`);

  if (!config.healthcheck || config.healthcheck.none) problems.push(`HEALTHCHECK: ${label} has none`);
  else found.push('HEALTHCHECK');
  return { problems, found };
}

/**
 * How the mirror handles each `&&`-joined part of a RUN that acts on the operating system. Parts that
 * match none of these are run as they are with sh -c.
 */
const PACKAGE_COMMANDS = { python3: ['python3'], make: ['make'], 'g++': ['g++'], gcc: ['gcc'], 'build-essential': ['make', 'gcc', 'g++'], tini: ['tini'], curl: ['curl'] };

function splitAndAnd(text) {
  const parts = [];
  let current = '';
  let quote = null;
  for (let i = 0; i < text.length; i++) {
    const char = text[i];
    if (quote) {
      if (char === quote) quote = null;
    } else if (char === '"' || char === "'") quote = char;
    else if (char === '&' && text[i + 1] === '&') {
      parts.push(current.trim());
      current = '';
      i++;
      continue;
    }
    current += char;
  }
  parts.push(current.trim());
  return parts;
}

/**
 * Classifies a shell-form RUN: `[{ kind: 'run' | 'not-replayed' | 'check-packages' | 'mkdir' | 'chown', text, … }]`.
 * Throws for a part that would act on an absolute path of the host it is not known how to relocate.
 */
function classifyRun(text, where = 'RUN') {
  const parts = splitAndAnd(text).map((part) => {
    const tokens = words(part);
    if (tokens[0] === 'apt-get' && tokens[1] === 'update') return { kind: 'not-replayed', text: part, why: "refreshes the image's package index" };
    if (tokens[0] === 'apt-get' && tokens[1] === 'clean') return { kind: 'not-replayed', text: part, why: "cleans the image's package cache" };
    if (tokens[0] === 'rm' && /^\/var\/(lib\/apt\/lists|cache\/apt)\//.test(tokens.at(-1) ?? '')) return { kind: 'not-replayed', text: part, why: "removes the image's package index" };
    if (tokens[0] === 'apt-get' && tokens[1] === 'install') {
      const packages = tokens.slice(2).filter((token) => !token.startsWith('-'));
      const unknown = packages.filter((name) => !PACKAGE_COMMANDS[name]);
      if (unknown.length > 0) throw new DockerfileError(`${where}: the mirror does not know which command proves the package(s) ${unknown.join(', ')} installed; add them to PACKAGE_COMMANDS in scripts/dockerfile.cjs`);
      return { kind: 'check-packages', text: part, packages, commands: [...new Set(packages.flatMap((name) => PACKAGE_COMMANDS[name]))] };
    }
    if (tokens[0] === 'mkdir' && tokens.slice(1).filter((t) => !t.startsWith('-')).every((t) => t.startsWith('/'))) {
      return { kind: 'mkdir', text: part, paths: tokens.slice(1).filter((t) => !t.startsWith('-')) };
    }
    if (tokens[0] === 'chown' && tokens.length >= 3) {
      const args = tokens.slice(1).filter((t) => !t.startsWith('-'));
      const [owner, ...paths] = args;
      if (paths.length > 0 && paths.every((t) => t.startsWith('/'))) return { kind: 'chown', text: part, owner, paths, recursive: tokens.includes('-R') };
    }
    return { kind: 'run', text: part };
  });
  for (const part of parts) {
    if (part.kind !== 'run') continue;
    const absolute = words(part.text).find((token) => token.startsWith('/'));
    if (absolute) throw new DockerfileError(`${where}: ${JSON.stringify(part.text)} acts on ${absolute}, which the mirror cannot relocate into its directory; use WORKDIR-relative paths or teach classifyRun`);
  }
  return parts;
}

/** .dockerignore: patterns with *, ?, ** and ! exceptions; the last matching line decides. */
function dockerignore(text) {
  const rules = text
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'))
    .map((line) => {
      const negate = line.startsWith('!');
      const pattern = require('node:path').posix.normalize((negate ? line.slice(1) : line).trim()).replace(/^\/+|\/+$/g, '');
      let source = '';
      for (let i = 0; i < pattern.length; i++) {
        const char = pattern[i];
        if (char === '*' && pattern[i + 1] === '*') {
          source += pattern[i + 2] === '/' ? '(?:.*/)?' : '.*';
          i += pattern[i + 2] === '/' ? 2 : 1;
        } else if (char === '*') source += '[^/]*';
        else if (char === '?') source += '[^/]';
        else source += char.replace(/[.+^${}()|[\]\\]/g, '\\$&');
      }
      // A pattern that matches a directory excludes everything below it.
      return { negate, regex: new RegExp(`^${source}(?:/.*)?$`) };
    });
  return (file) => {
    let ignored = false;
    for (const rule of rules) if (rule.regex.test(file)) ignored = !rule.negate;
    return ignored;
  };
}

module.exports = {
  DockerfileError,
  parseDockerfile,
  evaluate,
  checkRequirements,
  classifyRun,
  dockerignore,
  nodeImage,
  parseDuration,
  words,
  NODE_LTS_END_OF_LIFE,
  STORAGE_VARIABLES,
};
