/** Markup that is already safe: written by us, with every value inside escaped. */
export class SafeHtml {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
}

type Value = SafeHtml | string | number | boolean | null | undefined | readonly Value[];

/**
 * A template tag that escapes every interpolated value unless it is SafeHtml (or a list of them): what
 * registries store (names, tags, labels, history) is written by whoever pushed it, so it is never markup.
 */
export function html(strings: TemplateStringsArray, ...values: Value[]): SafeHtml {
  let text = strings[0];
  values.forEach((value, i) => {
    text += render(value) + strings[i + 1];
  });
  return new SafeHtml(text);
}

function render(value: Value): string {
  if (value === null || value === undefined || value === false) return '';
  if (value instanceof SafeHtml) return value.text;
  if (Array.isArray(value)) return value.map(render).join('');
  return escapeHtml(String(value));
}

export { formatBytes } from '../format-bytes';

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}


/** A time for people, in UTC (the server does not know the browser's zone): 2026-12-03 06:51 UTC. */
export function formatTime(time: number | string | null | undefined): string {
  if (time === null || time === undefined || time === '' || time === 0) return '—';
  const date = new Date(time);
  if (Number.isNaN(date.getTime())) return '—';
  return `${date.toISOString().slice(0, 16).replace('T', ' ')} UTC`;
}
