// overlord dashboard: each page's shell comes from the server; this fills
// it in from the HTTP API (/v1/), whose JSON is that of docs/json-output.md.
// No framework, no build step. Text from the API goes into the page as
// text (textContent), never as HTML.
'use strict';

const $ = (sel, root = document) => root.querySelector(sel);

// el builds an element: el('a', {href: '/x', class: 'y'}, 'text', child...).
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

// APIError is an answer of the API other than 2xx: {error: {kind, message}}.
class APIError extends Error {
  constructor(status, kind, message) {
    super(message);
    this.status = status;
    this.kind = kind;
  }
}

// api calls the API; a body makes it a JSON POST. A lost session goes to
// the login page, and back here after it.
async function api(path, body) {
  const opts = {credentials: 'same-origin', headers: {Accept: 'application/json'}};
  if (body !== undefined) {
    opts.method = 'POST';
    opts.headers['Content-Type'] = 'application/json';
    opts.body = JSON.stringify(body);
  }
  const resp = await fetch(path, opts);
  if (resp.status === 401) {
    location.href = '/login?next=' + encodeURIComponent(location.pathname + location.search);
    throw new APIError(401, 'unauthenticated', 'logged out');
  }
  let doc = null;
  const text = await resp.text();
  try { doc = text ? JSON.parse(text) : null; } catch (_) { doc = null; }
  if (!resp.ok) {
    const e = doc && doc.error;
    throw new APIError(resp.status, e ? e.kind : 'internal', e ? e.message : `HTTP ${resp.status}: ${text.slice(0, 200)}`);
  }
  return doc;
}

function showError(err) {
  const p = $('#error');
  if (!p) return;
  if (!err) { p.hidden = true; p.textContent = ''; return; }
  p.textContent = err.kind ? `${err.message} (${err.kind})` : String(err.message || err);
  p.hidden = false;
}

// Times: local and short, with the exact UTC time as a tooltip.
function when(ts) {
  if (!ts) return el('span', {class: 'muted'}, '—');
  const d = new Date(ts);
  return el('time', {datetime: ts, title: ts}, `${stamp(d)} (${ago(d)})`);
}

// stamp is a local time as 2026-11-21 14:20:21.
function stamp(d) {
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

function ago(d) {
  const s = Math.round((Date.now() - d.getTime()) / 1000);
  if (s < 5) return 'just now';
  if (s < 90) return `${s} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 129600) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} days ago`;
}

function bytes(n) {
  if (typeof n !== 'number') return '';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(n < 10 && i > 0 ? 1 : 0)} ${units[i]}`;
}

// badge shows a state: 'ok', 'bad', 'run', 'warn' or 'none'.
function badge(text, kind, title) {
  return el('span', {class: `badge ${kind}`, title}, text);
}

// entryBadge shows one minion's entry of a job.
function entryBadge(e) {
  if (!e) return badge('unknown', 'none');
  if (e.state !== 'FINISHED') {
    if (e.queued_since) return badge('queued', 'warn', e.last_error ? e.last_error.message : undefined);
    return badge(e.state === 'PARTIAL' ? 'running (output)' : 'running', 'run');
  }
  if (e.ok) return badge('ok', 'ok');
  const kind = e.error ? e.error.kind : 'failed';
  return badge(kind, kind === 'cancelled' || kind === 'skipped' ? 'warn' : 'bad');
}

function jobBadge(j) {
  if (j.state !== 'FINISHED') return badge(j.state, 'run');
  const s = j.summary || {};
  if (s.failed > 0) return badge('FINISHED', 'bad', `${s.failed} failed`);
  return badge('FINISHED', 'ok');
}

function counts(s) {
  if (!s) return '';
  const parts = [el('span', {}, `${s.ok} ok`)];
  if (s.failed) parts.push(el('span', {class: 'bad-text'}, `${s.failed} failed`));
  if (s.pending) parts.push(el('span', {}, `${s.pending} pending`));
  return el('span', {class: 'counts', title: `${s.total} minions`}, parts);
}

// glob matches a name against a pattern with * ? and [...]; a pattern
// without them matches names that contain it.
function nameFilter(pat) {
  pat = pat.trim();
  if (!pat) return () => true;
  if (!/[*?[]/.test(pat)) return (n) => n.includes(pat);
  let re = '';
  for (const c of pat) {
    if (c === '*') re += '.*';
    else if (c === '?') re += '.';
    else if (c === '[' || c === ']' || c === '-') re += c;
    else re += c.replace(/[.+^${}()|\\/]/g, '\\$&');
  }
  try {
    const r = new RegExp(`^${re}$`);
    return (n) => r.test(n);
  } catch (_) {
    return (n) => n.includes(pat);
  }
}

function debounce(fn, ms) {
  let t;
  return (...args) => { clearTimeout(t); t = setTimeout(() => fn(...args), ms); };
}

// ---- the fleet ----

async function fleetPage() {
  const params = new URLSearchParams(location.search);
  const q = $('#q'), group = $('#group'), tbody = $('#minions tbody'), count = $('#count');
  q.value = params.get('q') || '';
  const [minions, groups] = await Promise.all([api('/v1/minions'), api('/v1/groups')]);
  const names = Object.keys(groups || {}).sort();
  for (const g of names) group.append(el('option', {value: g}, `@${g} (${groups[g].length})`));
  group.value = names.includes(params.get('group')) ? params.get('group') : '';
  const gl = $('#groups');
  gl.replaceChildren(...(names.length ? names.map((g) =>
    el('li', {}, el('a', {href: `/?group=${encodeURIComponent(g)}`}, `@${g}`), ': ', groups[g].join(', ')))
    : [el('li', {class: 'muted'}, 'No groups. overlord group add NAME MINION... makes one.')]));

  function draw() {
    const match = nameFilter(q.value), members = group.value ? new Set(groups[group.value]) : null;
    const shown = minions.filter((m) => match(m.name) && (!members || members.has(m.name)));
    tbody.replaceChildren(...shown.map(minionRow));
    const reach = minions.filter((m) => m.reachable === true).length;
    const unreach = minions.filter((m) => m.reachable === false).length;
    count.textContent = `${shown.length} of ${minions.length} minions shown · ${reach} reachable, ${unreach} unreachable`;
    const p = new URLSearchParams();
    if (q.value) p.set('q', q.value);
    if (group.value) p.set('group', group.value);
    history.replaceState(null, '', p.toString() ? `/?${p}` : '/');
  }
  q.addEventListener('input', draw);
  group.addEventListener('change', draw);
  $('#fleet-filter').addEventListener('submit', (ev) => { ev.preventDefault(); draw(); });
  draw();
  inventory();
}

function minionRow(m) {
  const f = m.facts || {};
  let state;
  if (m.reachable === true) state = badge('reachable', 'ok');
  else if (m.reachable === false) state = badge('unreachable', 'bad', m.last_error ? `${m.last_error_kind || 'error'}: ${m.last_error}` : undefined);
  else state = badge('not called yet', 'none');
  return el('tr', {},
    el('td', {}, el('a', {href: `/minions/${encodeURIComponent(m.name)}`}, m.name)),
    el('td', {}, state),
    el('td', {}, m.last_seen ? el('time', {datetime: m.last_seen, title: m.last_seen}, ago(new Date(m.last_seen))) : el('span', {class: 'muted'}, 'never')),
    el('td', {class: 'mono opt'}, m.addr),
    el('td', {class: 'opt'}, [f.os, f.os_version].filter(Boolean).join(' ')),
    el('td', {class: 'opt'}, f.kernel || ''),
    el('td', {class: 'opt'}, f.cpus ?? ''),
    el('td', {class: 'opt'}, bytes(f.memory_bytes)));
}

// inventory shows the latest inventory snapshot (GET /v1/inventory;
// the section stays hidden while there is none: 404) and, on demand,
// what changed since the one before it (GET /v1/inventory/diff).
async function inventory() {
  let snap;
  try {
    snap = await api('/v1/inventory');
  } catch (_) {
    return;
  }
  const body = $('#inventory-body');
  const names = Object.keys(snap.minions || {});
  const down = names.filter((n) => snap.minions[n].state === 'unreachable').length;
  body.replaceChildren(el('p', {}, `Version ${snap.version}, taken `, when(snap.at), ` of ${names.length} minions`,
    down ? ` (${down} unreachable)` : '', '. ',
    el('button', {type: 'button', id: 'inventory-diff', onclick: (ev) => { ev.target.disabled = true; inventoryDiff(body); }}, 'What changed since the version before')));
  $('#inventory').hidden = false;
}

async function inventoryDiff(box, only) {
  let diff;
  try {
    diff = await api('/v1/inventory/diff');
  } catch (err) {
    box.append(el('p', {class: 'error'}, err.message));
    return;
  }
  const names = Object.keys(diff.minions || {}).filter((n) => !only || n === only).sort();
  const items = names.map((n) => el('li', {}, only ? '' : [el('a', {href: `/minions/${encodeURIComponent(n)}`}, n), ': '], changeText(diff.minions[n])));
  box.append(el('p', {}, `From version ${diff.old} (`, when(diff.old_at), `) to ${diff.new} (`, when(diff.new_at), '):'),
    items.length ? el('ul', {class: 'changes'}, items) : el('p', {class: 'muted'}, 'Nothing changed.'));
}

// changeText says in a line what changed of one minion between two
// inventory versions.
function changeText(d) {
  const parts = [];
  if (d.change === 'added' || d.change === 'removed') parts.push(d.change);
  if (d.old_state && d.old_state !== d.state) parts.push(`${d.old_state} → ${d.state}`);
  else if (d.state === 'unreachable') parts.push(`unreachable${d.error ? ` (${d.error.kind}: ${d.error.message})` : ''}, data of version ${d.as_of || '?'}`);
  if (d.minion_version) parts.push(`minion ${d.minion_version.old} → ${d.minion_version.new}`);
  const f = d.facts || {}, m = d.modules || {};
  for (const [k, v] of Object.entries(f.changed || {})) parts.push(`${k}: ${show(v.old)} → ${show(v.new)}`);
  for (const k of Object.keys(f.added || {})) parts.push(`fact ${k} added`);
  for (const k of Object.keys(f.removed || {})) parts.push(`fact ${k} removed`);
  for (const [k, v] of Object.entries(m.added || {})) parts.push(`module ${k} added${v.version ? ` (${v.version})` : ''}${v.sha256 ? ` sha256 ${v.sha256.slice(0, 12)}` : ''}`);
  for (const k of Object.keys(m.removed || {})) parts.push(`module ${k} removed`);
  for (const [k, v] of Object.entries(m.changed || {})) {
    const what = [];
    if (v.version) what.push(`version ${show(v.version.old)} → ${show(v.version.new)}`);
    if (v.sha256) what.push('new file');
    if ((v.methods_added || []).length) what.push(`+${v.methods_added.join(', +')}`);
    if ((v.methods_removed || []).length) what.push(`-${v.methods_removed.join(', -')}`);
    if (v.error) what.push(v.error.new ? `broken: ${v.error.new}` : 'fixed');
    parts.push(`module ${k}: ${what.join(', ') || 'changed'}`);
  }
  return parts.join('; ') || 'unchanged';
}

function show(v) { return v === undefined || v === null || v === '' ? '(none)' : typeof v === 'string' ? v : JSON.stringify(v); }

// ---- one minion ----

async function minionPage() {
  const name = decodeURIComponent(location.pathname.split('/')[2] || '');
  $('#title').textContent = name;
  document.title = `${name} · overlord`;
  const m = await api(`/v1/minions/${encodeURIComponent(name)}`);
  const box = $('#minion');
  const rows = [['Address', m.addr], ['Fingerprint', m.fingerprint], ['Added', when(m.added_at)], ['Last seen', when(m.last_seen)],
    ['Reachable', m.reachable === undefined ? 'not called yet' : [m.reachable ? 'yes' : 'no', m.checked_at ? [' (', when(m.checked_at), ')'] : '']],
    ['Groups', (m.groups || []).length ? m.groups.map((g) => `@${g}`).join(', ') : 'none']];
  if (m.last_error) rows.push(['Last error', `${m.last_error_kind || 'error'}: ${m.last_error}`]);
  const kids = [el('dl', {class: 'summary'}, rows.map(([k, v]) => [el('dt', {}, k), el('dd', {class: k === 'Fingerprint' ? 'mono' : ''}, v)])),
    el('p', {}, el('a', {href: `/call?target=${encodeURIComponent(name)}`}, 'Call a method on it'), ' · ',
      el('a', {href: `/jobs?target=${encodeURIComponent(name)}`}, 'Jobs that named it'))];
  const facts = m.facts || {};
  kids.push(el('h2', {}, 'Facts'));
  const keys = Object.keys(facts).sort();
  kids.push(keys.length ? el('div', {class: 'table-wrap'}, el('table', {class: 'list'}, el('tbody', {}, keys.map((k) =>
    el('tr', {}, el('th', {scope: 'row'}, k), el('td', {class: 'wrap mono'}, typeof facts[k] === 'string' ? facts[k] : JSON.stringify(facts[k])))))))
    : el('p', {class: 'muted'}, `None cached: overlord minion facts ${name}`));
  box.replaceChildren(...kids);
  // Its modules and its latest changes, from the inventory, if any.
  let snap;
  try {
    snap = await api('/v1/inventory');
  } catch (_) {
    return;
  }
  const inv = (snap.minions || {})[name];
  if (!inv) return;
  const mods = Object.keys(inv.modules || {}).sort();
  box.append(el('h2', {}, 'Modules'), el('p', {class: 'muted'}, `Inventory version ${snap.version}, `, when(snap.at)),
    el('ul', {}, mods.map((k) => {
      const mod = inv.modules[k];
      return el('li', {}, el('strong', {}, k), mod.plugin ? ` (plugin${mod.version ? ` ${mod.version}` : ''})` : '', ': ',
        (mod.methods || []).join(', '), mod.error ? el('span', {class: 'bad-text'}, ` — ${mod.error}`) : '');
    })), el('h2', {}, 'Changes'));
  await inventoryDiff(box, name);
}

// ---- jobs ----

const pageSize = 50;

async function jobsPage() {
  const params = new URLSearchParams(location.search);
  for (const k of ['state', 'target', 'call']) $(`#${k}`).value = params.get(k) || '';
  const q = new URLSearchParams({limit: String(pageSize)});
  for (const k of ['state', 'target', 'call', 'before']) if (params.get(k)) q.set(k, params.get(k));
  const tbody = $('#jobs tbody'), count = $('#count'), older = $('#older');
  async function load() {
    const list = await api(`/v1/jobs?${q}`);
    tbody.replaceChildren(...list.map(jobRow));
    count.textContent = list.length ? `${list.length} jobs, newest first${params.get('before') ? ' (older page)' : ''}` : 'No jobs match.';
    if (list.length === pageSize) {
      const p = new URLSearchParams(params);
      p.set('before', list[list.length - 1].job_id);
      older.href = `/jobs?${p}`;
      older.hidden = false;
    }
    // The first page follows jobs still open.
    if (!params.get('before') && list.some((j) => j.state !== 'FINISHED')) setTimeout(() => load().catch(showError), 3000);
  }
  await load();
}

function jobRow(j) {
  const call = `${j.module}.${j.method}`;
  return el('tr', {},
    el('td', {}, el('time', {datetime: j.created_at, title: j.created_at}, stamp(new Date(j.created_at)))),
    el('td', {}, el('a', {href: `/jobs/${j.job_id}`}, call)),
    el('td', {class: 'mono'}, j.target),
    el('td', {}, jobBadge(j)),
    el('td', {}, counts(j.summary)),
    el('td', {class: 'mono opt'}, el('a', {href: `/jobs/${j.job_id}`, 'aria-label': `job ${j.job_id}`}, j.job_id.slice(-12))));
}

// ---- one job ----

async function jobPage() {
  const id = location.pathname.split('/')[2];
  const live = $('#live'), cancel = $('#cancel'), results = $('#results');
  let doc = await api(`/v1/jobs/${encodeURIComponent(id)}`);
  // Output as it grows (the complete lines a running minion job
  // printed), per minion, while its entry has no result.
  const output = new Map();
  const cards = new Map();

  function render() {
    $('#title').textContent = `${doc.module}.${doc.method} on ${doc.target}`;
    document.title = `${doc.module}.${doc.method} · overlord`;
    const s = doc.summary || {};
    const rows = [['State', jobBadge(doc)], ['Job', el('span', {class: 'mono'}, doc.job_id)], ['Call', `${doc.module}.${doc.method}`],
      ['Target', el('span', {class: 'mono'}, doc.target)]];
    if (doc.args) rows.push(['Arguments', el('code', {}, JSON.stringify(doc.args))]);
    rows.push(['Started', when(doc.created_at)], ['Finished', when(doc.finished_at)],
      ['Minions', `${s.total} · ${s.ok} ok · ${s.failed} failed · ${s.pending} pending`]);
    $('#summary').replaceChildren(...rows.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]));
    if (doc.state === 'FINISHED') {
      cancel.hidden = true;
      cancelConfirm(false);
    } else {
      cancel.hidden = false;
    }
    for (const name of Object.keys(doc.minions || {}).sort()) renderEntry(name);
  }

  function renderEntry(name) {
    const e = doc.minions[name];
    let card = cards.get(name);
    if (!card) {
      card = el('section', {class: 'result', 'data-minion': name});
      cards.set(name, card);
      results.append(card);
    }
    const meta = [];
    if (e.duration_ms) meta.push(`${e.duration_ms} ms`);
    if (e.batch) meta.push(`batch ${e.batch}`);
    if (e.minion_job_id) meta.push(`minion job ${e.minion_job_id}`);
    const kids = [el('h3', {}, name, entryBadge(e), meta.length ? el('span', {class: 'meta'}, meta.join(' · ')) : '')];
    if (e.error) kids.push(el('p', {class: 'error'}, `${e.error.kind}: ${e.error.message}`));
    if (e.last_error && !e.error) kids.push(el('p', {class: 'muted'}, `waiting for it: ${e.last_error.kind}: ${e.last_error.message}`));
    const r = e.result;
    const out = output.get(name);
    if (r && typeof r === 'object' && !Array.isArray(r) && ('stdout' in r || 'stderr' in r)) {
      kids.push(streams(r.stdout, r.stderr));
      if ('exit_code' in r) kids.push(el('p', {class: 'muted'}, `exit code ${r.exit_code}${r.truncated ? ' · output truncated' : ''}`));
    } else if (r !== undefined) {
      kids.push(el('pre', {class: 'result-json'}, JSON.stringify(r, null, 2)));
    } else if (out) {
      kids.push(el('div', {class: 'label'}, 'output so far'), el('pre', {class: 'live-output'}, out));
    } else if (e.state !== 'FINISHED') {
      kids.push(el('p', {class: 'muted'}, 'No output yet.'));
    }
    card.replaceChildren(...kids);
  }

  function streams(stdout, stderr) {
    const f = document.createDocumentFragment();
    if (stdout) f.append(el('div', {class: 'label'}, 'stdout'), el('pre', {class: 'stdout'}, stdout));
    if (stderr) f.append(el('div', {class: 'label'}, 'stderr'), el('pre', {class: 'stderr'}, stderr));
    if (!stdout && !stderr) f.append(el('p', {class: 'muted'}, 'No output.'));
    return f;
  }

  function cancelConfirm(on) {
    const box = $('#cancel-confirm');
    if (!on) { if (box) box.remove(); return; }
    if (box) return;
    const yes = el('button', {type: 'button', class: 'danger', id: 'cancel-yes'}, 'Yes, cancel it');
    const no = el('button', {type: 'button', id: 'cancel-no'}, 'No');
    const c = el('span', {id: 'cancel-confirm', role: 'group', 'aria-label': 'Confirm the cancel'}, 'Cancel this job on every minion? ', yes, ' ', no);
    cancel.after(c);
    yes.focus();
    no.addEventListener('click', () => { c.remove(); cancel.hidden = false; cancel.focus(); });
    yes.addEventListener('click', async () => {
      yes.disabled = true;
      live.textContent = 'Cancelling…';
      try {
        doc = await api(`/v1/jobs/${encodeURIComponent(id)}/cancel`, {});
        showError(null);
        render();
        live.textContent = doc.state === 'FINISHED' ? 'Cancelled.' : 'Cancelling: the minions are stopping it…';
      } catch (err) {
        showError(err);
        yes.disabled = false;
      }
      c.remove();
    });
    cancel.hidden = true;
  }
  cancel.addEventListener('click', () => cancelConfirm(true));

  render();
  if (doc.state === 'FINISHED') return;
  // Follow it live: the job, then each entry's changes and output.
  live.textContent = 'Live: following the job…';
  const es = new EventSource(`/v1/jobs/${encodeURIComponent(id)}/events`);
  const data = (ev) => { try { return JSON.parse(ev.data); } catch (_) { return null; } };
  es.addEventListener('job', (ev) => {
    const d = data(ev);
    if (!d) return;
    doc = d;
    output.clear();
    render();
  });
  es.addEventListener('result', (ev) => {
    const d = data(ev);
    if (!d || !d.minion) return;
    doc.minions[d.minion] = d.result;
    renderEntry(d.minion);
  });
  es.addEventListener('output', (ev) => {
    const d = data(ev);
    if (!d || !d.minion) return;
    output.set(d.minion, (output.get(d.minion) || '') + (d.data || ''));
    const e = doc.minions[d.minion];
    if (e && e.result === undefined) renderEntry(d.minion);
  });
  es.addEventListener('end', (ev) => {
    const d = data(ev);
    es.close();
    if (d) doc = d;
    render();
    live.textContent = 'Finished.';
  });
  es.onerror = () => {
    live.textContent = es.readyState === EventSource.CLOSED ? 'Live updates stopped: reload the page.' : 'Connection lost: reconnecting…';
  };
  es.onopen = () => { live.textContent = 'Live: following the job…'; };
}

// ---- a new call ----

async function callPage() {
  const form = $('#call-form'), target = $('#target'), method = $('#method'), args = $('#args');
  const matches = $('#matches'), doc = $('#method-doc'), params = $('#params'), check = $('#check'), start = $('#start');
  const q = new URLSearchParams(location.search);
  target.value = q.get('target') || '';
  method.value = q.get('method') || '';
  args.value = q.get('args') || '';
  const paramsHint = params.textContent;
  let described = [];
  try {
    described = await api('/ui/modules.json');
  } catch (err) {
    showError(err);
  }
  const methods = new Map();
  for (const mod of described || []) for (const m of mod.methods || []) methods.set(`${mod.name}.${m.name}`, m);
  $('#methods').replaceChildren(...[...methods.keys()].sort().map((k) => el('option', {value: k})));

  function describe() {
    const m = methods.get(method.value.trim());
    if (!m) {
      doc.textContent = method.value.includes('.') ? 'Not a built-in method: the minions check its arguments.' : 'module.method, as in overlord call.';
      params.textContent = paramsHint;
      return;
    }
    doc.textContent = m.doc || '';
    const ps = (m.params || []).map((p) =>
      el('code', {title: p.doc}, `${p.name}${p.required ? '' : '?'}: ${p.type}${p.default !== undefined ? ` = ${JSON.stringify(p.default)}` : ''}`));
    params.replaceChildren('Parameters (? optional; hover for what each is): ', ...(ps.length ? ps.flatMap((c, i) => (i ? [', ', c] : [c])) : ['none']), '.');
  }

  // request builds the transmit request the form describes.
  function request() {
    const mm = method.value.trim();
    const dot = mm.indexOf('.');
    const req = {target: target.value.trim(), module: dot > 0 ? mm.slice(0, dot) : mm, method: dot > 0 ? mm.slice(dot + 1) : '',
      args: parseArgs(args.value, methods.get(mm)), async: $('#async').checked};
    const t = $('#timeout').value.trim();
    if (t) req.timeout = t;
    return req;
  }

  async function preview() {
    const t = target.value.trim();
    if (!t) { matches.textContent = 'Which minions: names, globs (web*), ranges (web[1-3]), @groups, !exclusions, commas.'; return; }
    try {
      const list = await api(`/v1/minions?target=${encodeURIComponent(t)}`);
      matches.classList.remove('bad-text');
      matches.textContent = list.length ? `Matches ${list.length}: ${list.map((m) => m.name).join(', ')}` : 'Matches no minion.';
    } catch (err) {
      matches.classList.add('bad-text');
      matches.textContent = err.message;
    }
  }

  // verify asks the API to check the call as the CLI would; true if it
  // would be made.
  async function verify() {
    const req = request();
    if (!req.target || !req.module || !req.method) {
      check.className = 'check-msg bad';
      check.textContent = !req.target ? 'Give a target.' : 'Give the method as module.method.';
      return false;
    }
    try {
      const got = await api('/v1/jobs/check', req);
      check.className = 'check-msg good';
      const n = (got.minions || []).length;
      check.textContent = `Ready: ${got.module}.${got.method} on ${n} minion${n === 1 ? '' : 's'}` +
        (got.args && Object.keys(got.args).length ? ` with ${JSON.stringify(got.args)}` : '') + '.' +
        (got.notes && got.notes.length ? `\n${got.notes.join('\n')}` : '');
      if (got.minions) matches.textContent = `Matches ${n}: ${got.minions.join(', ')}`;
      return true;
    } catch (err) {
      check.className = 'check-msg bad';
      check.textContent = err.message;
      return false;
    }
  }

  // Once a check has been shown, every change checks again; until
  // then, the message would be stale.
  const stale = () => {
    if (!check.textContent) return false;
    check.className = 'check-msg';
    check.textContent = 'Checking…';
    return true;
  };
  const recheck = debounce(verify, 400);
  const later = debounce(preview, 300);
  target.addEventListener('input', () => { later(); if (stale()) recheck(); });
  method.addEventListener('input', () => { describe(); if (stale()) recheck(); });
  args.addEventListener('input', () => { if (stale()) recheck(); });
  method.addEventListener('change', () => { describe(); if (method.value.trim()) { stale(); recheck(); } });

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    start.disabled = true;
    showError(null);
    try {
      if (!(await verify())) {
        check.focus();
        return;
      }
      check.textContent = 'Starting…';
      const job = await api('/v1/jobs', request());
      location.href = `/jobs/${job.job_id}`;
    } catch (err) {
      check.className = 'check-msg bad';
      check.textContent = err.message;
    } finally {
      start.disabled = false;
    }
  });
  check.tabIndex = -1;
  describe();
  if (target.value) preview();
}

// parseArgs reads the form's arguments: one name=value a line; a first
// line without a name is the first parameter's; a line that does not
// start with name= continues the value above. Values are typed by the
// method's parameters when the method is known, else as JSON when they
// parse as JSON, else as strings.
function parseArgs(text, m) {
  const out = {};
  const ps = (m && m.params) || [];
  let last = null;
  for (const line of text.split('\n')) {
    const kv = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
    if (kv && (!m || ps.some((p) => p.name === kv[1]))) {
      last = kv[1];
      out[last] = kv[2];
    } else if (last !== null) {
      out[last] += '\n' + line;
    } else if (line.trim() !== '') {
      last = ps.length ? ps[0].name : 'arg';
      out[last] = line;
    }
  }
  for (const k of Object.keys(out)) {
    const p = ps.find((x) => x.name === k);
    out[k] = typed(out[k].replace(/\n+$/, ''), p ? p.type : '');
  }
  return out;
}

function typed(v, type) {
  const types = type ? type.split('|') : [];
  const has = (t) => types.includes(t);
  let j;
  try { j = {v: JSON.parse(v)}; } catch (_) { j = null; }
  if (types.length === 0 || has('any')) return j && typeof j.v !== 'string' ? j.v : v;
  if (has('bool')) {
    if (/^(true|yes|on)$/i.test(v)) return true;
    if (/^(false|no|off)$/i.test(v)) return false;
  }
  if ((has('int') || has('float') || has('duration')) && /^-?\d+(\.\d+)?$/.test(v)) return Number(v);
  if (j && Array.isArray(j.v) && has('list')) return j.v;
  if (j && j.v && typeof j.v === 'object' && !Array.isArray(j.v) && has('object')) return j.v;
  if (has('string') || has('duration')) return v;
  if (has('list')) return v.split(',').map((s) => s.trim()).filter(Boolean);
  return j ? j.v : v;
}

// ---- start ----

const pages = {fleet: fleetPage, minion: minionPage, jobs: jobsPage, job: jobPage, call: callPage};

document.addEventListener('DOMContentLoaded', () => {
  const page = pages[document.body.dataset.page];
  if (page) page().catch(showError);
});
