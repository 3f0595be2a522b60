/** Reads what a Dockerfile's last stage says about the container it runs: enough for lints, not a parser of the whole syntax. */

export interface Instruction {
  keyword: string;
  args: string;
}

/** The instructions of the last stage (after its FROM), continuation lines joined, comments dropped. */
export function finalStage(text: string): Instruction[] {
  const joined = text.replace(/^[ \t]*#.*\n/gm, '').replace(/\\\n/g, ' ');
  const instructions = joined
    .split('\n')
    .map((line) => /^\s*([A-Za-z]+)\s+(.*)$/.exec(line))
    .filter((match): match is RegExpExecArray => match !== null)
    .map((match) => ({ keyword: match[1].toUpperCase(), args: match[2].trim() }));
  const from = instructions.map((instruction) => instruction.keyword).lastIndexOf('FROM');
  return instructions.slice(from + 1);
}

/** A JSON array of strings (exec form), or null for the shell form. */
function execForm(args: string): string[] | null {
  try {
    const parsed = JSON.parse(args) as unknown;
    return Array.isArray(parsed) && parsed.every((item) => typeof item === 'string') ? parsed : null;
  } catch {
    return null;
  }
}

export interface Runtime {
  workdir: string;
  expose: number[];
  user?: string;
  entrypoint: string[] | null;
  cmd: string[] | null;
  healthcheck?: { options: string; command: string[] | null };
  env: Record<string, string>;
  volumes: string[];
}

export function runtimeOf(text: string): Runtime {
  const runtime: Runtime = { workdir: '/', expose: [], entrypoint: null, cmd: null, env: {}, volumes: [] };
  for (const { keyword, args } of finalStage(text)) {
    if (keyword === 'USER') runtime.user = args;
    if (keyword === 'WORKDIR') runtime.workdir = args;
    if (keyword === 'EXPOSE') runtime.expose.push(...args.split(/\s+/).map((port) => Number(port.split('/')[0])));
    if (keyword === 'ENTRYPOINT') runtime.entrypoint = execForm(args);
    if (keyword === 'CMD') runtime.cmd = execForm(args);
    if (keyword === 'VOLUME') runtime.volumes.push(...(execForm(args) ?? args.split(/\s+/)));
    if (keyword === 'ENV') for (const [, key, value] of args.matchAll(/(\w+)=(\S+)/g)) runtime.env[key] = value;
    if (keyword === 'HEALTHCHECK') {
      const match = /^(.*?)\bCMD\s+(.*)$/.exec(args);
      runtime.healthcheck = { options: match?.[1] ?? args, command: match ? execForm(match[2]) : null };
    }
  }
  return runtime;
}

