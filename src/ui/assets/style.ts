/** The pages' stylesheet, served as /ui/assets/ui.css: system fonts, light and dark by the system setting. */
export const STYLE = `:root {
  color-scheme: light dark;
  --bg: #ffffff; --fg: #1b1f24; --muted: #545d68; --line: #d0d7de; --soft: #f4f6f8;
  --link: #0550ae; --accent: #0969da; --danger: #b3261e; --ok-bg: #dafbe1; --ok-fg: #0a4721;
  --hosted: #ddf4ff; --cached: #fff1c2; --ghcr: #f0e6ff; --second: #8250df;
}
@media (prefers-color-scheme: dark) {
  :root {
    --bg: #0d1117; --fg: #e6edf3; --muted: #9aa5b1; --line: #30363d; --soft: #161b22;
    --link: #79b8ff; --accent: #388bfd; --danger: #ff8a80; --ok-bg: #0f3d1f; --ok-fg: #aff5b4;
    --hosted: #0c2d4a; --cached: #3d2e00; --ghcr: #2e1a4a; --second: #d2a8ff;
  }
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg); font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
a { color: var(--link); }
a:focus-visible, button:focus-visible, input:focus-visible, summary:focus-visible, .scroll:focus-visible { outline: 3px solid var(--accent); outline-offset: 2px; }
code { font: 0.875em ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; overflow-wrap: anywhere; }
.wrap { white-space: pre-wrap; }
.skip { position: absolute; left: -9999px; }
.skip:focus { left: 1rem; top: 1rem; background: var(--bg); padding: 0.5rem; z-index: 1; }
.offscreen { position: fixed; left: -9999px; }
header { border-bottom: 1px solid var(--line); background: var(--soft); }
nav { display: flex; flex-wrap: wrap; align-items: center; gap: 0.5rem 1.5rem; max-width: 80rem; margin: 0 auto; padding: 0.75rem 1rem; }
nav ul { display: flex; flex-wrap: wrap; gap: 1rem; margin: 0; padding: 0; list-style: none; }
nav a { text-decoration: none; padding: 0.25rem 0; }
nav a[aria-current="page"] { font-weight: 600; border-bottom: 2px solid var(--accent); }
.brand { font-weight: 700; color: var(--fg); }
.who { margin-left: auto; }
main { max-width: 80rem; margin: 0 auto; padding: 1rem; }
h1 { font-size: 1.6rem; margin: 0.5rem 0 1rem; overflow-wrap: anywhere; }
h2 { font-size: 1.25rem; margin-top: 2rem; }
.crumbs { margin: 0; color: var(--muted); }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-size: 0.95rem; }
th, td { text-align: left; vertical-align: top; padding: 0.45rem 0.6rem; border-bottom: 1px solid var(--line); }
thead th { background: var(--soft); white-space: nowrap; }
tbody th { font-weight: 500; overflow-wrap: anywhere; }
.num { text-align: right; white-space: nowrap; }
.plain { list-style: none; margin: 0; padding: 0; }
.badge { display: inline-block; padding: 0 0.5rem; border-radius: 1rem; font-size: 0.85em; border: 1px solid var(--line); }
.badge-pinned { background: var(--cached); font-weight: 600; } .badge-hosted { background: var(--hosted); } .badge-cached { background: var(--cached); } .badge-ghcr { background: var(--ghcr); }
button, input { font: inherit; color: inherit; }
input { background: var(--bg); border: 1px solid var(--muted); border-radius: 0.375rem; padding: 0.4rem 0.6rem; min-width: 0; }
button { background: var(--soft); border: 1px solid var(--muted); border-radius: 0.375rem; padding: 0.35rem 0.8rem; cursor: pointer; min-height: 2.25rem; }
button.link { background: none; border: none; color: var(--link); text-decoration: underline; padding: 0; min-height: 0; }
.danger { color: var(--danger); }
button.danger { border-color: var(--danger); }
.inline { display: inline; }
.search { display: flex; flex-wrap: wrap; gap: 0.5rem; align-items: center; }
.search input { flex: 1 1 16rem; }
.login { display: grid; gap: 0.5rem; max-width: 22rem; }
.commands { list-style: none; padding: 0; display: grid; gap: 0.5rem; }
.commands code { background: var(--soft); border: 1px solid var(--line); border-radius: 0.375rem; padding: 0.3rem 0.5rem; display: inline-block; }
.actions { white-space: nowrap; }
.facts, .pairs { display: grid; grid-template-columns: max-content 1fr; gap: 0.3rem 1rem; margin: 0; }
.facts dt, .pairs dt { font-weight: 600; overflow-wrap: anywhere; }
.facts dd, .pairs dd { margin: 0; overflow-wrap: anywhere; }
.notice { background: var(--ok-bg); color: var(--ok-fg); padding: 0.5rem 0.75rem; border-radius: 0.375rem; }
.error { color: var(--danger); font-weight: 600; }
.buttons { display: flex; flex-wrap: wrap; gap: 0.5rem 1rem; align-items: center; }
caption { text-align: left; font-weight: 600; padding: 0.5rem 0; }
.chart { margin: 0; }
.chart svg { width: 100%; height: 12rem; border: 1px solid var(--line); border-radius: 0.375rem; background: var(--soft); }
.chart .axis { stroke: var(--line); }
.chart .line { stroke-width: 2; }
.line-hosted { stroke: var(--accent); } .line-proxy { stroke: var(--second); }
.legend { white-space: nowrap; }
.key::before { content: ""; display: inline-block; width: 1rem; height: 0.2rem; margin: 0 0.3rem 0.2rem 0.5rem; vertical-align: middle; }
.key-hosted::before { background: var(--accent); } .key-proxy::before { background: var(--second); }
@media (max-width: 40rem) {
  .facts, .pairs { grid-template-columns: 1fr; }
  .facts dd, .pairs dd { margin-bottom: 0.5rem; }
  h1 { font-size: 1.3rem; }
}
`;
