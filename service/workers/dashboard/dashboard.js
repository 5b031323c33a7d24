// dashboard.js - renders checkout-analytics' snapshots, sent on /events (Server-Sent Events).
// Every value from the snapshot is put into the page as text (textContent), never as HTML.
'use strict';

const SVG = 'http://www.w3.org/2000/svg';
const STALE_MS = 3000; // no message for this long: the stream is disconnected
const RECONNECT_MS = 1000;
const numberFormat = new Intl.NumberFormat('en');

let source = null;
let lastMessage = 0;

function $(id) { return document.getElementById(id); }
function count(n, one, many) { return numberFormat.format(n) + ' ' + (n === 1 ? one : many); }
function money(cents) {
  const sign = cents < 0 ? '-' : '';
  const abs = Math.abs(cents);
  return sign + numberFormat.format(Math.floor(abs / 100)) + '.' + String(abs % 100).padStart(2, '0');
}
function seconds(s) {
  if (s < 60) return s.toFixed(1) + ' s';
  if (s < 3600) return Math.floor(s / 60) + ' min ' + Math.floor(s % 60) + ' s';
  return (s / 3600).toFixed(1) + ' h';
}
function minuteLabel(epochSeconds) {
  const d = new Date(epochSeconds * 1000);
  return String(d.getHours()).padStart(2, '0') + ':' + String(d.getMinutes()).padStart(2, '0');
}
function setText(id, text) {
  const el = $(id);
  if (el.textContent !== text) el.textContent = text;
}
function showNote(id, text) {
  const el = $(id);
  el.hidden = !text;
  el.textContent = text || '';
  el.classList.toggle('error', !!text);
}

function setState(state, text) {
  const el = $('status');
  if (el.dataset.state !== state) el.dataset.state = state;
  setText('status', text);
  document.body.classList.toggle('stale', state === 'disconnected');
}

// Replace a table's body with rows of cells: [text, className] ('num' right-aligns).
function fillTable(id, rows) {
  const body = $(id).tBodies[0];
  const fresh = document.createElement('tbody');
  for (const cells of rows) {
    const tr = document.createElement('tr');
    cells.forEach(([text, klass], i) => {
      const td = document.createElement(i === 0 ? 'th' : 'td');
      if (i === 0) td.scope = 'row';
      td.textContent = text;
      if (klass) td.className = klass;
      tr.appendChild(td);
    });
    fresh.appendChild(tr);
  }
  body.replaceWith(fresh);
  const empty = document.querySelector('.empty[data-for="' + id + '"]');
  if (empty) empty.hidden = rows.length > 0;
}

function svgEl(name, attrs, text) {
  const el = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (text !== undefined) el.textContent = text;
  return el;
}

// Bars for the 60 minutes ending with the current one; values maps epoch minute -> number.
// label(v) names a value with its unit (bar tooltips); axis(v) is the short form on the axis.
function barChart(id, values, nowMinute, width, height, klass, label, axis) {
  const svg = $(id);
  const left = 70, bottom = 18, top = 8, slots = 60;
  const plotW = width - left - 4, plotH = height - top - bottom;
  let max = 0;
  for (const v of values.values()) max = Math.max(max, v);
  const scale = max > 0 ? max : 1;
  const nodes = [];
  nodes.push(svgEl('line', { class: 'axis', x1: left, y1: top + plotH, x2: width - 4, y2: top + plotH }));
  nodes.push(svgEl('text', { x: left - 4, y: top + 9, 'text-anchor': 'end' }, axis(max)));
  nodes.push(svgEl('text', { x: left - 4, y: top + plotH, 'text-anchor': 'end' }, axis(0)));
  const barW = plotW / slots;
  for (let i = 0; i < slots; i++) {
    const minute = nowMinute - (slots - 1 - i);
    const v = values.get(minute) || 0;
    if (v <= 0) continue;
    const h = Math.max(1, (v / scale) * plotH);
    const bar = svgEl('rect', { class: 'bar ' + klass, x: (left + i * barW + 0.5).toFixed(1), y: (top + plotH - h).toFixed(1),
      width: Math.max(1, barW - 1).toFixed(1), height: h.toFixed(1) });
    bar.appendChild(svgEl('title', {}, minuteLabel(minute * 60) + ': ' + label(v)));
    nodes.push(bar);
  }
  nodes.push(svgEl('text', { x: left, y: height - 4 }, minuteLabel((nowMinute - slots + 1) * 60)));
  nodes.push(svgEl('text', { x: width - 4, y: height - 4, 'text-anchor': 'end' }, minuteLabel(nowMinute * 60) + ' (now)'));
  svg.replaceChildren(...nodes);
}

function render(s) {
  const nowMinute = Math.floor(s.generated_ms / 60000);
  showNote('db-error', s.db_error ? 'Database: ' + s.db_error : '');
  if (s.totals) {
    setText('total-orders', count(s.totals.orders, 'order', 'orders'));
    setText('total-units', count(s.totals.units, 'unit', 'units'));
    setText('total-revenue', money(s.totals.revenue_cents));
  }
  if (s.minutes) {
    const orders = new Map(), revenue = new Map();
    for (const m of s.minutes) {
      orders.set(m.minute / 60, m.orders);
      revenue.set(m.minute / 60, m.revenue_cents);
    }
    barChart('orders-chart', orders, nowMinute, 600, 160, 'orders', (v) => count(v, 'order', 'orders'),
      (v) => numberFormat.format(v));
    barChart('revenue-chart', revenue, nowMinute, 600, 160, 'revenue', (v) => money(v) + ' revenue',
      (v) => numberFormat.format(Math.round(v / 100)));
    setText('minute-orders', count(orders.get(nowMinute) || 0, 'order', 'orders'));
    setText('minute-revenue', money(revenue.get(nowMinute) || 0) + ' revenue');
  }
  if (s.top_skus) {
    fillTable('top-skus', s.top_skus.map((t) => [[t.sku], [count(t.units, 'unit', 'units'), 'num'],
      [money(t.revenue_cents), 'num']]));
  }
  setText('low-threshold', 'at or below ' + count(s.low_stock_threshold, 'unit', 'units'));
  if (s.low_stock) {
    fillTable('low-stock', s.low_stock.map((t) => [[t.sku], [count(t.stock, 'unit', 'units'), 'num'],
      [count(t.units_sold, 'unit', 'units'), 'num']]));
  }
  renderPipeline(s);
  renderOutcomes(s, nowMinute);
}

function renderPipeline(s) {
  const k = s.kafka || {};
  showNote('kafka-error', k.error ? 'Kafka: ' + k.error : '');
  fillTable('lag', (k.groups || []).map((g) => [[g.group],
    [g.error ? 'unknown (' + g.error + ')' : count(g.lag, 'event', 'events') + ' behind', 'num']]));
  const r = s.relay;
  if (r && r.mode === 'wal') {
    // the slot: WAL the relay has not confirmed yet, and whether a relay streams it at all
    const behind = count(r.lag_bytes, 'byte', 'bytes') + ' of WAL behind';
    if (!r.exists) setText('relay-pending', 'slot ' + r.slot + ' does not exist yet (no server or relay has started)');
    else if (!r.active) setText('relay-pending', 'no relay connected: slot ' + r.slot + ' is ' + behind);
    else setText('relay-pending', 'slot ' + r.slot + ' is ' + behind);
    setText('relay-oldest', r.active ? '(last flush ' + seconds(r.flush_lag_seconds) + ' after its commit, ' +
      'relay answered ' + seconds(Math.max(0, r.reply_seconds || 0)) + ' ago)' : '');
  } else if (r) {
    setText('relay-pending', count(r.pending, 'outbox row', 'outbox rows') + ' not yet published');
    setText('relay-oldest', r.pending > 0 ? '(oldest waiting ' + seconds(r.oldest_seconds) + ')' : '');
  }
  if (s.workers) {
    fillTable('workers', s.workers.map((w) => [[w.worker], [count(w.dead_letters, 'message', 'messages'), 'num'],
      [w.last_event ? seconds(Math.max(0, w.ago_seconds)) + ' ago (' + w.last_event + ')' : 'none yet', 'id']]));
  }
}

function renderOutcomes(s, nowMinute) {
  const c = s.checkout || {};
  showNote('metrics-error', c.error ? 'Server metrics (' + c.url + '): ' + c.error : '');
  const minutes = c.minutes || [];
  const admitted = new Map(minutes.map((m) => [m.minute / 60, m.admitted]));
  barChart('outcomes-chart', admitted, nowMinute, 600, 120, 'orders', (v) => count(v, 'checkout', 'checkouts') + ' admitted',
    (v) => numberFormat.format(v));
  const recent = minutes.slice(-5).reverse();
  fillTable('outcomes', recent.map((m) => [[minuteLabel(m.minute)], [numberFormat.format(m.admitted), 'num'],
    [numberFormat.format(m.out_of_stock), 'num'], [numberFormat.format(m.purchase_limit), 'num'],
    [numberFormat.format(m.unavailable), 'num'], [numberFormat.format(m.serialization_retries), 'num']]));
  if (c.since_start) {
    setText('retries-total', 'Serialization retries: ' + count(c.since_start.serialization_retries, 'retry', 'retries') +
      ' since the dashboard started, ' + count(c.since_start.server_serialization_retries, 'retry', 'retries') +
      ' since the server started.');
  }
}

function connect() {
  if (source) source.close();
  source = new EventSource('events');
  source.onmessage = (e) => {
    lastMessage = Date.now();
    let snapshot;
    try {
      snapshot = JSON.parse(e.data);
    } catch (err) {
      return;
    }
    setState('live', 'live · updated ' + new Date(snapshot.generated_ms).toLocaleTimeString());
    render(snapshot);
  };
  source.onerror = () => {
    setState('disconnected', 'stream disconnected · reconnecting…');
    // the browser retries by itself while the stream is CONNECTING; once CLOSED we start again
    if (source.readyState === EventSource.CLOSED) {
      source = null;
      setTimeout(connect, RECONNECT_MS);
    }
  };
}

// A stream that went silent (a frozen server, a lost network) is as good as gone.
setInterval(() => {
  const silent = Date.now() - lastMessage;
  if (lastMessage && silent > STALE_MS) {
    setState('disconnected', 'stream disconnected · reconnecting…');
    if (silent > 2 * STALE_MS) {
      lastMessage = Date.now() - STALE_MS - 1; // try again in STALE_MS, still disconnected
      connect();
    }
  }
}, 500);

connect();
