/**
 * The layers of src/, lowest first, and the rule that keeps them readable: a module imports only from
 * its own layer or a lower one, and no chain of imports comes back to where it started. A new file is
 * placed by its folder; a new top-level file or folder must be added here, in the layer it belongs to.
 */
import fs from 'node:fs';
import path from 'node:path';

const SRC = path.join(__dirname, '../../src');

const LAYERS: string[][] = [
  ['oci/'], // the spec's vocabulary: digests, names, media types, manifests, error codes
  ['config/'], // TOML + environment + flags → one validated Config
  ['log.ts', 'streams.ts', 'lifecycle.ts', 'format-bytes.ts'], // what every layer above may use
  ['metrics/'], // the registry's series; observers handed to the layers below
  ['storage/'], // blob store, uploads, SQLite index, hosted repositories, gc
  ['auth/'], // users, rules, tokens
  ['proxy/'], // upstream client, read-through repositories
  ['ghcr/'], // GitHub's REST API → ghcr.io's catalog
  ['transfer/'], // export and import: static trees, OCI layouts, docker save archives
  ['http/', 'ui/'], // middleware and routes; the web UI and /api/
  ['registry.ts'], // the composition root of the content: storage, cache, GHCR, gc
  ['app.ts'], // the Koa app: middleware order and routes
  ['server/', 'check-config.ts'], // listeners, connections, shutdown; the configuration check
  ['main.ts'], // the command line
];

function sourceFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const file = path.join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(file);
    return entry.name.endsWith('.ts') ? [file] : [];
  });
}

const modulePath = (file: string) => path.relative(SRC, file).split(path.sep).join('/');

function layerOf(module: string): number {
  const layer = LAYERS.findIndex((members) => members.some((m) => (m.endsWith('/') ? module.startsWith(m) : module === m)));
  if (layer < 0) throw new Error(`src/${module} is in no layer: add it to LAYERS in ${path.basename(__filename)}`);
  return layer;
}

/** Relative imports of one file (static, `import type` included, and dynamic), as module paths under src/. */
function importsOf(file: string): string[] {
  const text = fs.readFileSync(file, 'utf8');
  const specifiers = [...text.matchAll(/(?:from|import\()\s*'(\.{1,2}\/[^']+)'/g)].map((m) => m[1]);
  return specifiers.map((specifier) => {
    const resolved = path.resolve(path.dirname(file), specifier);
    const candidates = [`${resolved}.ts`, path.join(resolved, 'index.ts')];
    const found = candidates.find((candidate) => fs.existsSync(candidate));
    if (!found) throw new Error(`${modulePath(file)} imports ${specifier}, which is not a file under src/`);
    return modulePath(found);
  });
}

type ImportGraph = Map<string, string[]>;

/** Imports that go from a module up to a higher layer, as "from -> to". */
function upwardImports(graph: ImportGraph): string[] {
  const upward: string[] = [];
  for (const [module, imports] of graph) {
    for (const imported of imports) {
      if (layerOf(imported) > layerOf(module)) upward.push(`${module} -> ${imported}`);
    }
  }
  return upward;
}

/** Each chain of imports that comes back to where it started, as "a -> b -> a". */
function importCycles(graph: ImportGraph): string[] {
  const cycles: string[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const stack: string[] = [];
  const visit = (module: string) => {
    if (state.get(module) === 'done') return;
    if (state.get(module) === 'visiting') {
      cycles.push([...stack.slice(stack.indexOf(module)), module].join(' -> '));
      return;
    }
    state.set(module, 'visiting');
    stack.push(module);
    for (const imported of graph.get(module) ?? []) visit(imported);
    stack.pop();
    state.set(module, 'done');
  };
  for (const module of graph.keys()) visit(module);
  return cycles;
}

const graph: ImportGraph = new Map(sourceFiles(SRC).map((file) => [modulePath(file), importsOf(file)]));

describe('the import graph of src/', () => {
  it('has every module in a layer', () => {
    for (const module of graph.keys()) expect(() => layerOf(module)).not.toThrow();
  });

  it('imports only from the same layer or a lower one', () => {
    expect(upwardImports(graph)).toEqual([]);
  });

  it('has no cycles', () => {
    expect(importCycles(graph)).toEqual([]);
  });
});

describe('the checks themselves', () => {
  const sample: ImportGraph = new Map([
    ['http/routes/blobs.ts', ['storage/repository.ts']],
    ['storage/repository.ts', ['http/errors.ts', 'oci/digest.ts']],
    ['http/errors.ts', []],
    ['oci/digest.ts', []],
    ['server/listeners.ts', ['server/shutdown.ts']],
    ['server/shutdown.ts', ['server/listeners.ts']],
  ]);

  it('finds an import from a lower layer to a higher one', () => {
    expect(upwardImports(sample)).toEqual(['storage/repository.ts -> http/errors.ts']);
  });

  it('finds two modules that import each other', () => {
    expect(importCycles(sample)).toEqual(['server/listeners.ts -> server/shutdown.ts -> server/listeners.ts']);
  });

  it('refuses a module in no layer', () => {
    expect(() => layerOf('somewhere-new.ts')).toThrow(/in no layer/);
  });
});
