// Medians over repetitions, the table (figures, ratios ours / reference, targets from issues 7 and 14), and
// the JSON record of a run.

export function median(values) {
  const numbers = values.filter((value) => typeof value === 'number' && Number.isFinite(value)).sort((a, b) => a - b);
  if (numbers.length === 0) return undefined;
  const middle = Math.floor(numbers.length / 2);
  return numbers.length % 2 ? numbers[middle] : (numbers[middle - 1] + numbers[middle]) / 2;
}

/** {scenario: {ours: [rep…], reference: [rep…]}} → {scenario: {ours: {metric: median}, reference: …}} */
export function medians(results) {
  const out = {};
  for (const [scenario, byServer] of Object.entries(results)) {
    out[scenario] = {};
    for (const [kind, reps] of Object.entries(byServer)) {
      const metrics = new Set(reps.flatMap((rep) => Object.keys(rep)));
      out[scenario][kind] = {};
      for (const metric of metrics) {
        const values = reps.map((rep) => rep[metric]);
        out[scenario][kind][metric] = typeof values[0] === 'boolean' ? values.every(Boolean) : median(values);
      }
    }
  }
  return out;
}

const atLeast = (ratio) => ({ text: `≥ ${ratio}×`, met: (ours, reference) => ours / reference >= ratio });
const atMost = (ratio) => ({ text: `≤ ${ratio}×`, met: (ours, reference) => ours / reference <= ratio });
const exactly = (value) => ({ text: `= ${value}`, met: (ours) => ours === value });
const atMostAbsolute = (value, unit) => ({ text: `≤ ${value} ${unit}`, met: (ours) => ours <= value });

/** The table's rows: scenario, metric, unit, target, and which machine limit bounds it. */
export function tableRows(sizes) {
  const blob = formatSize(sizes.blob);
  const rows = [
    ['push-monolithic', `push ${blob} monolithic`, 'MiBps', 'MiB/s', atLeast(2), 'push'],
    ['push-chunked', `push ${blob} in ${formatSize(sizes.chunk)} PATCHes`, 'MiBps', 'MiB/s', atLeast(2.5), 'push'],
    ['pull-1', `pull ${blob}, 1 client`, 'MiBps', 'MiB/s', atLeast(1.5), 'pull'],
    [`pull-${sizes.pullClients}`, `pull ${blob}, ${sizes.pullClients} clients`, 'MiBps', 'MiB/s', atLeast(1.2), 'pull'],
    // Issue 14: with a client that does not hash, at least distribution's throughput.
    ['pull-discard-1', `pull ${blob}, 1 client, discarding`, 'MiBps', 'MiB/s', atLeast(1), 'pull'],
    [`pull-discard-${sizes.pullClients}`, `pull ${blob}, ${sizes.pullClients} clients, discarding`, 'MiBps', 'MiB/s', atLeast(1), 'pull'],
    ['nginx-pull-1', `nginx → server: pull ${blob}, 1 client, discarding`, 'MiBps', 'MiB/s', undefined, 'pull'],
    [`nginx-pull-${sizes.pullClients}`, `nginx → server: pull ${blob}, ${sizes.pullClients} clients, discarding`, 'MiBps', 'MiB/s', undefined, 'pull'],
    // Issue 14: nginx sending our files serves 1.5× what nginx in front of distribution serves.
    ['nginx-accel-pull-1', `nginx → server, accel_redirect: pull ${blob}, 1 client, discarding`, 'MiBps', 'MiB/s', atLeast(1.5), 'pull'],
    [
      `nginx-accel-pull-${sizes.pullClients}`,
      `nginx → server, accel_redirect: pull ${blob}, ${sizes.pullClients} clients, discarding`,
      'MiBps',
      'MiB/s',
      atLeast(1.5),
      'pull',
    ],
  ];
  // The s3 backend beside distribution's s3 driver, on the same radosgw: reported, no targets.
  const s3Blob = formatSize(sizes.bigBlob);
  rows.push(
    ['s3-push-monolithic', `s3: push ${s3Blob} monolithic`, 'MiBps', 'MiB/s', undefined],
    ['s3-push-chunked', `s3: push ${s3Blob} in ${formatSize(sizes.chunk)} PATCHes`, 'MiBps', 'MiB/s', undefined],
  );
  for (const clients of [1, sizes.pullClients]) {
    rows.push([`s3-pull-discard-${clients}`, `s3: pull ${s3Blob}, ${clients} client${clients > 1 ? 's' : ''}, streamed by the server`, 'MiBps', 'MiB/s', undefined]);
  }
  for (const clients of [1, sizes.pullClients]) {
    rows.push([`s3-redirect-pull-discard-${clients}`, `s3: pull ${s3Blob}, ${clients} client${clients > 1 ? 's' : ''}, 307 to radosgw`, 'MiBps', 'MiB/s', undefined]);
  }
  for (const [operation, target] of [['put', atLeast(3)], ['get', atLeast(5)], ['head', atLeast(5)]]) {
    const label = `${sizes.manifests} manifests ${operation.toUpperCase()} by tag, c=${sizes.concurrency}`;
    rows.push([`manifest-${operation}`, label, 'opsPerSecond', 'ops/s', target]);
    rows.push([`manifest-${operation}`, '  p50', 'p50Ms', 'ms']);
    rows.push([`manifest-${operation}`, '  p99', 'p99Ms', 'ms']);
  }
  rows.push(
    ['tags-list', `list ${sizes.manifests} tags, n=100`, 'ms', 'ms'],
    ['tags-list', '  pages', 'pages', ''],
    ['catalog', `catalog of ${sizes.repositories + 2} repositories, n=100`, 'ms', 'ms'],
    ['catalog', '  pages', 'pages', ''],
  );
  // The same with our index in PostgreSQL (the reference unchanged): reported, no targets.
  for (const operation of ['put', 'get', 'head']) {
    rows.push([`pg-manifest-${operation}`, `PostgreSQL index: ${sizes.manifests} manifests ${operation.toUpperCase()} by tag, c=${sizes.concurrency}`, 'opsPerSecond', 'ops/s']);
    rows.push([`pg-manifest-${operation}`, '  p50', 'p50Ms', 'ms']);
    rows.push([`pg-manifest-${operation}`, '  p99', 'p99Ms', 'ms']);
  }
  rows.push(
    ['pg-tags-list', `PostgreSQL index: list ${sizes.manifests} tags, n=100`, 'ms', 'ms'],
    ['pg-catalog', `PostgreSQL index: catalog of ${sizes.repositories + 2} repositories, n=100`, 'ms', 'ms'],
  );
  const image = `${sizes.imageLayers} × ${formatSize(sizes.layer)}`;
  for (const [scenario, label, target, transfers] of [
    ['proxy-cold', `cache: cold pull ${image}`, atMost(0.5), exactly(1)],
    ['proxy-warm', `cache: warm pull ${image}`, undefined, undefined],
    ['proxy-dedupe', `cache: ${sizes.dedupeClients} clients, cold ${formatSize(sizes.bigBlob)} blob`, atMost(0.5), exactly(1)],
  ]) {
    rows.push([scenario, label, 'seconds', 's', target]);
    rows.push([scenario, '  upstream sent', 'upstreamMiB', 'MiB']);
    rows.push([scenario, '  upstream requests', 'upstreamRequests', '']);
    rows.push([scenario, '  upstream blob GETs', 'upstreamBlobGets', '']);
    rows.push([scenario, '  most transfers of one blob', 'maxTransfersPerBlob', '', transfers]);
    // What the cold targets are up against on this machine: the same pull with no cache between, and warm.
    if (scenario === 'proxy-warm') rows.push(['proxy-direct', `cache: the same pull straight from the upstream`, 'seconds', 's']);
    if (scenario === 'proxy-dedupe') rows.push(['proxy-dedupe-warm', `cache: ${sizes.dedupeClients} clients, the same blob warm`, 'seconds', 's']);
  }
  return rows.map(([scenario, label, metric, unit, target, limit]) => ({ scenario, label, metric, unit, target, limit }));
}

/**
 * The largest peak RSS of any server process over the run (issue 14: ≤ 150 MiB); the label names the group
 * and repetition of the process that reached it, ours and the reference's (`worst`: processPeakRss entries).
 */
export function wholeRunRows(worst, reps) {
  const which = (entry) => (entry ? `${entry.group} ${entry.rep}/${reps}` : '–');
  return [
    {
      scenario: 'whole-run',
      label: `peak RSS of any server process, whole run (ours: ${which(worst.ours)}; reference: ${which(worst.reference)})`,
      metric: 'peakRssMiB',
      unit: 'MiB',
      target: atMostAbsolute(150, 'MiB'),
    },
  ];
}

/**
 * Server CPU seconds per GiB of blob bytes moved, for every scenario that moves them (pushes, pulls,
 * the cache); behind nginx, nginx's and the sum too. Targets of issue 14: a discarding pull costs at
 * most 1.2× distribution's; with accel_redirect our process spends under 0.05 s per GiB.
 */
export function cpuPerGiBRows(scenarios, summary) {
  const rows = [];
  for (const scenario of scenarios) {
    const figures = summary[scenario]?.ours ?? summary[scenario]?.reference;
    if (figures?.serverCpuPerGiB === undefined) continue;
    const target = scenario.startsWith('pull-discard-') ? atMost(1.2) : scenario.startsWith('nginx-accel-') ? atMostAbsolute(0.05, 's/GiB') : undefined;
    rows.push({ scenario, label: `server CPU per GiB: ${scenario}`, metric: 'serverCpuPerGiB', unit: 's/GiB', target });
    if (figures.nginxCpuPerGiB !== undefined) {
      rows.push({ scenario, label: '  nginx CPU per GiB', metric: 'nginxCpuPerGiB', unit: 's/GiB' });
      rows.push({ scenario, label: '  nginx + server CPU per GiB', metric: 'totalCpuPerGiB', unit: 's/GiB' });
    }
  }
  return rows;
}

/** Scenarios measured on another process than the server under test (the upstream itself). */
const NOT_THE_SERVER = new Set(['proxy-direct']);

export function rssRows(scenarios) {
  return scenarios.filter((scenario) => !NOT_THE_SERVER.has(scenario)).map((scenario) => ({ scenario, label: `peak RSS: ${scenario}`, metric: 'rssMiB', unit: 'MiB', target: atMostAbsolute(150, 'MiB') }));
}

/** CPU time the server used (all its threads), to tell what is CPU-bound on a small machine. */
export function cpuRows(scenarios) {
  return scenarios.filter((scenario) => !NOT_THE_SERVER.has(scenario)).map((scenario) => ({ scenario, label: `server CPU: ${scenario}`, metric: 'serverCpuSeconds', unit: 's' }));
}

/** Evaluates the rows against the medians: the figures, the ratio and whether the target is met. */
export function evaluate(rows, summary, limits) {
  return rows
    .filter((row) => summary[row.scenario])
    .map((row) => {
      const ours = summary[row.scenario].ours?.[row.metric];
      const reference = summary[row.scenario].reference?.[row.metric];
      const ratio = ours !== undefined && reference ? ours / reference : undefined;
      const limit = row.limit === 'push' ? Math.min(limits.sha256MiBps, limits.diskFsyncMiBps) : row.limit === 'pull' ? limits.loopbackMiBps : undefined;
      const met = row.target && ours !== undefined && reference !== undefined ? row.target.met(ours, reference) : undefined;
      return {
        scenario: row.scenario,
        label: row.label,
        metric: row.metric,
        unit: row.unit,
        ours,
        reference,
        ratio,
        target: row.target?.text,
        met,
        oursOfLimit: limit && ours !== undefined ? ours / limit : undefined,
        referenceOfLimit: limit && reference !== undefined ? reference / limit : undefined,
      };
    });
}

export function formatSize(bytes) {
  const GiB = 1024 ** 3;
  const MiB = 1024 ** 2;
  if (bytes >= GiB && bytes % GiB === 0) return `${bytes / GiB} GiB`;
  if (bytes % MiB === 0) return `${bytes / MiB} MiB`;
  return `${(bytes / MiB).toFixed(1)} MiB`;
}

function formatNumber(value) {
  if (value === undefined) return '–';
  if (typeof value === 'boolean') return String(value);
  if (Number.isInteger(value)) return value.toLocaleString('en-US');
  const abs = Math.abs(value);
  if (abs >= 100) return Math.round(value).toLocaleString('en-US');
  if (abs >= 10) return value.toFixed(1);
  if (abs >= 1) return value.toFixed(2);
  return value.toFixed(3);
}

/** A Markdown table (also readable on a terminal). */
export function renderTable(evaluated) {
  const header = ['scenario', 'unit', 'ours', 'reference', 'ours/ref', 'target', 'met', 'ours (ref) of limit'];
  const lines = evaluated.map((row) => [
    row.label,
    row.unit,
    formatNumber(row.ours),
    formatNumber(row.reference),
    row.ratio === undefined ? '' : `${row.ratio.toFixed(2)}×`,
    row.target ?? '',
    row.met === undefined ? '' : row.met ? 'yes' : 'NO',
    row.oursOfLimit === undefined ? '' : `${Math.round(row.oursOfLimit * 100)}% (${Math.round(row.referenceOfLimit * 100)}%)`,
  ]);
  const widths = header.map((title, column) => Math.max(title.length, ...lines.map((line) => line[column].length)));
  const numeric = new Set([2, 3, 4]);
  const render = (cells) =>
    `| ${cells.map((cell, column) => (numeric.has(column) ? cell.padStart(widths[column]) : cell.padEnd(widths[column]))).join(' | ')} |`;
  const rule = `|${widths.map((width, column) => (numeric.has(column) ? `${'-'.repeat(width + 1)}:` : '-'.repeat(width + 2))).join('|')}|`;
  return [render(header), rule, ...lines.map(render)].join('\n');
}

export function renderLimits(limits) {
  return (
    `| machine limit | MiB/s |\n|---|---:|\n` +
    `| sha256, one core | ${formatNumber(limits.sha256MiBps)} |\n` +
    `| disk write + fsync (${formatSize(limits.diskBytes)}) | ${formatNumber(limits.diskFsyncMiBps)} |\n` +
    `| loopback HTTP, Node to Node, one stream | ${formatNumber(limits.loopbackMiBps)} |`
  );
}
