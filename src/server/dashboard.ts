/**
 * The live dashboard: one HTML page, one stylesheet, one script, no dependencies and nothing
 * fetched from elsewhere (about 15 KB in all). Kept as strings so the build ships them with
 * the JavaScript. The script opens `/events` (Server-Sent Events) and redraws on each snapshot.
 */

export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>pyfleet</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="dashboard.css">
</head>
<body>
<header>
  <h1>pyfleet</h1>
  <span id="module" class="muted"></span>
  <span id="conn" class="pill off" data-conn="connecting">connecting</span>
  <span class="spacer"></span>
  <span id="headline" class="muted"></span>
</header>
<main>
  <section class="wide">
    <h2>Workers <span id="serving" class="muted"></span></h2>
    <div id="workers" class="tiles"></div>
    <div class="legend">
      <span class="dot s-initializing"></span>initializing <span class="dot s-ready"></span>ready <span class="dot s-busy"></span>busy
      <span class="dot s-degraded"></span>degraded <span class="dot s-terminating"></span>terminating <span class="dot s-terminated"></span>terminated
    </div>
  </section>
  <section class="wide">
    <h2>Commands <span class="muted">calls/s, and latency of the last 1000 calls within a minute</span></h2>
    <table id="commands" class="grid"></table>
  </section>
  <section>
    <h2>Circuits</h2>
    <div id="circuits"></div>
  </section>
  <section>
    <h2>Queue <span id="queue-now" class="muted"></span></h2>
    <svg id="queue-chart" viewBox="0 0 240 60"></svg>
  </section>
  <section>
    <h2>Calls</h2>
    <table id="calls" class="kv"></table>
  </section>
  <section>
    <h2>Sessions</h2>
    <table id="sessions" class="kv"></table>
  </section>
  <section>
    <h2>Streams and binary data</h2>
    <table id="streams" class="kv"></table>
  </section>
  <section>
    <h2>Recoveries</h2>
    <div id="recoveries"></div>
  </section>
  <section class="wide">
    <h2>Errors by category <span id="errors-window" class="muted"></span></h2>
    <svg id="errors-chart" viewBox="0 0 600 120"></svg>
    <div id="errors-legend" class="legend"></div>
  </section>
  <section>
    <h2>Restarts</h2>
    <table id="restarts" class="kv"></table>
  </section>
  <section class="span2">
    <h2>Recent events</h2>
    <ol id="feed"></ol>
  </section>
</main>
<script src="dashboard.js"></script>
</body>
</html>
`;

export const DASHBOARD_CSS = `:root{--bg:#0f1419;--panel:#182029;--line:#263241;--text:#dde3ea;--muted:#8b98a8;
--initializing:#7d8896;--ready:#2f9e44;--busy:#1c7ed6;--degraded:#f08c00;--terminating:#e8590c;--terminated:#c92a2a}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--text);font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif}
header{display:flex;align-items:center;gap:12px;padding:10px 18px;border-bottom:1px solid var(--line)}
h1{font-size:18px;margin:0;letter-spacing:.5px}
h2{font-size:13px;text-transform:uppercase;letter-spacing:.6px;color:var(--muted);margin:0 0 10px}
.spacer{flex:1}.muted{color:var(--muted);font-weight:normal;text-transform:none;letter-spacing:0}
.pill{padding:2px 9px;border-radius:10px;font-size:12px}
.pill.on{background:#1e4d2b;color:#b2f2bb}.pill.off{background:#5c1d1d;color:#ffc9c9}
main{display:grid;grid-template-columns:repeat(3,minmax(0,1fr));gap:14px;padding:14px 18px}
section{background:var(--panel);border:1px solid var(--line);border-radius:8px;padding:12px 14px;min-width:0}
section.wide{grid-column:span 3}section.span2{grid-column:span 2}
@media (max-width:900px){main{grid-template-columns:1fr}section.wide,section.span2{grid-column:span 1}}
.tiles{display:flex;flex-wrap:wrap;gap:10px}
.tile{width:200px;border-radius:8px;padding:8px 10px;color:#fff;border:2px solid transparent}
.tile .id{font-weight:700;font-size:15px}.tile .st{float:right;font-size:12px;opacity:.95}
.tile .meta{font-size:12px;opacity:.9;margin-top:4px;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.tile.unhealthy{border-color:#ffd43b;border-style:dashed}
.tile .load{height:5px;margin-top:6px;background:rgba(0,0,0,.3);border-radius:3px;overflow:hidden}
.tile .load i{display:block;height:100%;background:#fff;opacity:.85}
.s-initializing{background:var(--initializing)}.s-ready{background:var(--ready)}.s-busy{background:var(--busy)}
.s-degraded{background:var(--degraded)}.s-terminating{background:var(--terminating)}.s-terminated{background:var(--terminated)}
.legend{margin-top:8px;font-size:12px;color:var(--muted)}
.dot{display:inline-block;width:10px;height:10px;border-radius:2px;margin:0 4px 0 10px;vertical-align:-1px}
.circuit{display:flex;justify-content:space-between;align-items:center;padding:6px 0;border-bottom:1px solid var(--line)}
.circuit:last-child{border-bottom:0}
.badge{padding:1px 8px;border-radius:4px;font-size:12px;font-weight:600}
.c-closed{background:#1e4d2b;color:#b2f2bb}.c-open{background:#7a1f1f;color:#ffc9c9}.c-half_open{background:#6b4a00;color:#ffe066}
svg{width:100%;height:120px;display:block;background:#121a22;border-radius:4px}
#queue-chart{height:60px}
table.kv{width:100%;border-collapse:collapse;font-size:13px}
table.kv td{padding:2px 0}table.kv td:last-child{text-align:right;font-variant-numeric:tabular-nums}
table.grid{width:100%;border-collapse:collapse;font-size:13px}table.grid th{color:var(--muted);font-weight:normal;text-align:right}
table.grid td,table.grid th{padding:3px 8px;border-bottom:1px solid var(--line);text-align:right;font-variant-numeric:tabular-nums}
table.grid td:first-child,table.grid th:first-child{text-align:left}
#recoveries .big{display:flex;gap:14px;margin-bottom:8px}
#recoveries .big div{font-size:12px;color:var(--muted)}#recoveries .big b{display:block;font-size:20px;color:var(--text)}
ol#feed{list-style:none;margin:0;padding:0;font-size:12px;max-height:220px;overflow:auto}
ol#feed li{padding:3px 0;border-bottom:1px solid var(--line)}
ol#feed .t{color:var(--muted);margin-right:6px;font-variant-numeric:tabular-nums}
ol#feed .warn{color:#ffd8a8}ol#feed .error{color:#ffa8a8}
`;

export const DASHBOARD_JS = String.raw`(function () {
  'use strict';
  var token = new URLSearchParams(location.search).get('token');
  var q = token ? '?token=' + encodeURIComponent(token) : '';
  var COLORS = {
    initialization_error: '#e64980', connection_error: '#f76707', communication_error: '#fab005',
    timeout_error: '#be4bdb', resource_error: '#4c6ef5', health_check_error: '#15aabf',
    session_error: '#82c91e', python_error: '#fa5252', system_error: '#868e96'
  };
  function $(id) { return document.getElementById(id); }
  function esc(s) {
    return String(s).replace(/[&<>"']/g, function (c) {
      return { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c];
    });
  }
  function num(n) { return n == null ? '-' : Number(n).toLocaleString(); }
  function bytes(n) {
    if (n == null) return '-';
    var u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'], i = 0;
    while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : String(n)) + ' ' + u[i];
  }
  function kv(id, rows) {
    $(id).innerHTML = rows.map(function (r) {
      return '<tr data-key="' + esc(r[0]) + '"><td>' + esc(r[0]) + '</td><td>' + esc(r[1]) + '</td></tr>';
    }).join('');
  }
  function time(t) { var d = new Date(t); return d.toTimeString().slice(0, 8); }

  function workers(s) {
    $('serving').textContent = s.serving + ' of ' + s.workers.filter(function (w) { return w.state !== 'terminated'; }).length + ' serving';
    $('workers').innerHTML = s.workers.map(function (w) {
      var meta = w.exit ? esc(w.exit.reason) : 'pid ' + esc(w.pid) + ' · ' + num(w.requests) + ' req';
      var cap = s.capacity || 1;
      var meta2 = w.exit
        ? 'pid ' + esc(w.pid) + ' · ' + num(w.requests) + ' req'
        : (w.rssMb == null ? '' : w.rssMb + ' MB · ') + w.inflight + '/' + cap + ' in flight · ↻ ' + w.restarts;
      var load = w.exit ? '' : '<div class="load" title="' + w.inflight + ' of ' + cap + ' calls at once"><i style="width:' +
        Math.min(100, Math.round(w.inflight * 100 / cap)) + '%"></i></div>';
      return '<div class="tile s-' + esc(w.state) + (w.health === 'unhealthy' ? ' unhealthy' : '') + '" data-worker-id="' + w.id +
        '" data-state="' + esc(w.state) + '" data-health="' + esc(w.health) + '" data-inflight="' + (w.exit ? 0 : w.inflight) +
        '" data-capacity="' + cap + '" title="' + esc(w.state + ', ' + w.health) + '">' +
        '<span class="id">#' + w.id + '</span><span class="st">' + esc(w.state) + '</span>' +
        '<div class="meta">' + meta + '</div><div class="meta">' + meta2 + '</div>' + load + '</div>';
    }).join('');
  }

  function circuits(s) {
    var names = Object.keys(s.circuits);
    $('circuits').innerHTML = names.map(function (n) {
      var c = s.circuits[n];
      var extra = c.state === 'open' ? ' · retry in ' + Math.ceil(c.retryAfterMs / 1000) + ' s' : '';
      return '<div class="circuit" data-circuit="' + esc(n) + '" data-state="' + esc(c.state) + '"><span>' + esc(n) +
        ' <span class="muted">opened ' + c.opened + '× · ' + c.failures + ' failures' + extra + '</span></span>' +
        '<span class="badge c-' + esc(c.state) + '">' + esc(c.state.replace('_', '-')) + '</span></div>';
    }).join('') || '<span class="muted">none</span>';
  }

  function queue(s) {
    $('queue-now').textContent = s.queue.length + ' waiting (max ' + num(s.queue.max) + ')';
    var pts = s.queue.series, max = Math.max(1, Math.max.apply(null, pts.concat([0])));
    var svg = $('queue-chart'), w = Math.max(120, svg.clientWidth || 240), h = 60, n = Math.max(1, pts.length - 1);
    svg.setAttribute('viewBox', '0 0 ' + w + ' ' + h);
    var d = pts.map(function (v, i) { return (i ? 'L' : 'M') + (i * w / n).toFixed(1) + ',' + (h - 4 - (v / max) * (h - 10)).toFixed(1); }).join('');
    $('queue-chart').innerHTML = pts.length ? '<path d="' + d + '" fill="none" stroke="#4dabf7" stroke-width="1.5" vector-effect="non-scaling-stroke"/>' +
      '<text x="4" y="12" fill="#8b98a8" font-size="10">max ' + max + '</text>' : '';
  }

  function calls(s) {
    var c = s.calls;
    var rows = [['Total', num(c.total)], ['Succeeded', num(c.succeeded)], ['Failed', num(c.failed)], ['In flight', num(c.inFlight)],
      ['Retries', num(c.retries)], ['Via recovery', num(c.viaRecovery)], ['Via fallback', num(c.viaFallback)], ['Calls/s', c.perSecond]];
    $('calls').innerHTML = rows.map(function (r) { return '<tr><td>' + r[0] + '</td><td>' + r[1] + '</td></tr>'; }).join('');
    $('headline').textContent = c.perSecond + ' calls/s · ' + num(c.total) + ' calls · up ' + Math.round(s.pool.uptimeMs / 1000) + ' s';
  }

  function ms(v) { return v == null ? '-' : v + ' ms'; }
  function commands(s) {
    var head = '<tr><th>command</th><th>calls/s</th><th>p50</th><th>p99</th><th>calls</th><th>errors</th></tr>';
    $('commands').innerHTML = head + (s.commands.map(function (c) {
      return '<tr data-command="' + esc(c.command) + '"><td>' + esc(c.command) + '</td><td>' + c.perSecond + '</td><td>' + ms(c.p50Ms) +
        '</td><td>' + ms(c.p99Ms) + '</td><td>' + num(c.calls) + '</td><td>' + num(c.errors) + '</td></tr>';
    }).join('') || '<tr><td class="muted" colspan="6">no calls yet</td></tr>');
  }

  function errors(s) {
    var svg = $('errors-chart'), e = s.errors, W = Math.max(200, svg.clientWidth || 600), H = 120, n = e.buckets.length, bw = W / n;
    svg.setAttribute('viewBox', '0 0 ' + W + ' ' + H);
    var cats = Object.keys(COLORS);
    var max = 1;
    e.buckets.forEach(function (b) {
      var t = 0; cats.forEach(function (c) { t += b.counts[c] || 0; }); if (t > max) max = t;
    });
    var out = '';
    e.buckets.forEach(function (b, i) {
      var y = H - 14;
      cats.forEach(function (c) {
        var v = b.counts[c] || 0; if (!v) return;
        var hh = v / max * (H - 24);
        y -= hh;
        out += '<rect x="' + (i * bw + 1).toFixed(1) + '" y="' + y.toFixed(1) + '" width="' + (bw - 2).toFixed(1) + '" height="' + hh.toFixed(1) +
          '" fill="' + COLORS[c] + '"><title>' + esc(c) + ': ' + v + ' at ' + time(b.t) + '</title></rect>';
      });
    });
    out += '<text x="4" y="12" fill="#8b98a8" font-size="10">max ' + max + ' / ' + (e.bucketMs / 1000) + ' s</text>';
    if (n) out += '<text x="2" y="' + (H - 2) + '" fill="#8b98a8" font-size="10">' + time(e.buckets[0].t) + '</text><text x="' + (W - 2) + '" y="' + (H - 2) +
      '" fill="#8b98a8" font-size="10" text-anchor="end">now</text>';
    $('errors-chart').innerHTML = out;
    $('errors-window').textContent = 'last ' + Math.round(n * e.bucketMs / 60000) + ' min';
    $('errors-legend').innerHTML = cats.filter(function (c) { return e.totals[c]; }).map(function (c) {
      return '<span class="dot" style="background:' + COLORS[c] + '"></span>' + esc(c) + ' ' + e.totals[c];
    }).join('') || 'no errors yet';
  }

  function sessions(s) {
    var x = s.sessions;
    var sn = x.snapshots, snaps = sn.ok + sn.failed, rs = x.restores, rn = rs.ok + rs.failed;
    kv('sessions', [['Sessions', num(x.total)], ['Bound to a worker', num(x.bound)], ['Durable', num(x.durable)], ['Restored', num(x.restored)],
      ['Snapshots', num(sn.ok) + (sn.failed ? ' (' + num(sn.failed) + ' failed)' : '')],
      ['Snapshot size', snaps ? bytes(Math.round(sn.bytes / snaps)) + ' avg, ' + bytes(sn.maxBytes) + ' max' : '-'],
      ['Restores', num(rs.ok) + (rs.failed ? ' (' + num(rs.failed) + ' failed)' : '') + (rn ? ', ' + Math.round(rs.ms / rn) + ' ms avg' : '')],
      ['Not durable', num(x.notDurable)]]);
  }

  function streams(s) {
    var t = s.streams, b = s.binary;
    kv('streams', [['Streams open', num(t.open)], ['Ended', num(t.ok)], ['Broken', num(t.broken)], ['Failed', num(t.error)],
      ['Items', num(t.items)], ['Binary to Python', bytes(b.toPython)], ['Binary from Python', bytes(b.fromPython)]]);
  }

  function recoveries(s) {
    var r = s.recoveries;
    var rows = Object.keys(r.byStrategy).filter(function (k) { return r.byStrategy[k].initiated; }).map(function (k) {
      var v = r.byStrategy[k]; return '<tr><td>' + esc(k) + '</td><td>' + v.succeeded + ' ok / ' + v.failed + ' failed</td></tr>';
    }).join('');
    $('recoveries').innerHTML = '<div class="big"><div><b>' + r.initiated + '</b>initiated</div><div><b>' + r.succeeded + '</b>succeeded</div><div><b>' +
      r.failed + '</b>failed</div><div><b>' + r.active + '</b>active</div></div><table class="kv">' + rows + '</table>';
  }

  function restarts(s) {
    var rows = Object.keys(s.restarts.byReason).map(function (k) { return '<tr><td>' + esc(k) + '</td><td>' + s.restarts.byReason[k] + '</td></tr>'; });
    $('restarts').innerHTML = '<tr><td>Total</td><td>' + s.restarts.total + '</td></tr>' + rows.join('');
  }

  function feed(s) {
    $('feed').innerHTML = s.feed.map(function (f) {
      return '<li class="' + esc(f.level) + '"><span class="t">' + time(f.at) + '</span>' + esc(f.text) + '</li>';
    }).join('') || '<li class="muted">nothing yet</li>';
  }

  function render(s) {
    $('module').textContent = s.pool.module + ' · pool ' + s.pool.id + (s.pool.draining ? ' · draining' : '');
    workers(s); commands(s); circuits(s); queue(s); calls(s); sessions(s); streams(s); errors(s); recoveries(s); restarts(s); feed(s);
    document.body.setAttribute('data-updated', String(s.at));
  }

  function conn(on, text) {
    var el = $('conn'); el.className = 'pill ' + (on ? 'on' : 'off'); el.textContent = text; el.setAttribute('data-conn', on ? 'live' : 'down');
  }

  var es = new EventSource('events' + q);
  es.addEventListener('open', function () { conn(true, 'live'); });
  es.addEventListener('error', function () { conn(false, 'reconnecting'); });
  es.addEventListener('snapshot', function (ev) { conn(true, 'live'); render(JSON.parse(ev.data)); });
})();
`;
