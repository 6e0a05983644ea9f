// The camera-operator page (GET /j/:session?t=STREAM_TOKEN): full-screen tally, the last cue,
// the link's state and health, and the settings of this side. It paints from the view embedded
// in the page, then follows `view` and `cue` messages on the session WebSocket, watching with the
// stream token (which reads this stream only). With the join token it is the venue page: the
// cameras waiting from this place ("waiting for the producer", each with its label), and the
// punch:// URI to point cameras at (the join token reads nothing else). Everything shown is set
// as text, never markup.
'use strict';
(function () {
  const initial = JSON.parse(document.getElementById('punch-initial').textContent);
  const params = new URLSearchParams(location.search);
  const token = params.get('t') || params.get('token') || '';
  const session = initial.session;
  const stream = initial.stream;
  const role = initial.role;
  const TALLY = { 'on-air': 'ON AIR', preview: 'PREVIEW', off: 'OFF' };
  const $ = (id) => document.getElementById(id);
  let lastFieldsKey = '';
  let backoff = 500;

  function text(node, value) {
    if (node.textContent !== value) node.textContent = value;
  }

  function showCue(cue) {
    const box = $('op-cue');
    if (!cue || typeof cue.text !== 'string') {
      box.hidden = true;
      return;
    }
    if (cue.role && cue.role !== role) return;
    box.hidden = false;
    text($('op-cue-text'), cue.text);
    const at = Date.parse(cue.at);
    text($('op-cue-at'), Number.isFinite(at) ? new Date(at).toLocaleTimeString() : '');
  }

  function field(list, name, value) {
    const dd = document.createElement('dd');
    const code = document.createElement('code');
    code.textContent = String(value);
    const copy = document.createElement('button');
    copy.type = 'button';
    copy.textContent = 'Copy';
    copy.addEventListener('click', async () => {
      try {
        await navigator.clipboard.writeText(String(value));
        copy.textContent = 'Copied';
      } catch (_) {
        copy.textContent = 'Select and copy';
      }
      setTimeout(() => (copy.textContent = 'Copy'), 2000);
    });
    dd.append(code, copy);
    const dt = document.createElement('dt');
    dt.textContent = name;
    list.append(dt, dd);
  }

  function showSettings(side) {
    const device = side && side.device && typeof side.device === 'object' ? side.device : null;
    const key = JSON.stringify(device) + initial.punch;
    if (key === lastFieldsKey) return;
    lastFieldsKey = key;
    const list = $('op-fields');
    list.replaceChildren();
    if (device) {
      field(list, 'Mode', device.mode);
      field(list, 'Host', device.host);
      field(list, 'Port', device.port);
      field(list, 'Passphrase', device.passphrase);
      field(list, 'Key length', device.pbkeylen);
      field(list, 'Latency (ms)', device.latency);
      if (device.streamid) field(list, 'Stream ID', device.streamid);
      field(list, 'SRT URL', device.url);
      $('op-settings').open = true;
    } else {
      field(list, 'punch:// URI', initial.punch);
    }
    // a new URL whenever the settings change (a hash of them), so the browser never shows a stale QR
    let h = 2166136261;
    for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 16777619) >>> 0;
    $('op-qr').src = '/j/' + encodeURIComponent(session) + '/qr?t=' + encodeURIComponent(token) + '&k=' + h.toString(16);
  }

  function fmt(v, unit, digits) {
    return typeof v === 'number' && Number.isFinite(v) ? v.toFixed(digits) + ' ' + unit : null;
  }

  // The venue page: who waits from here. A camera that is no longer listed was given its place
  // (or turned down); its own element or app says which.
  const seenWaiting = new Map();
  function applyVenue(view) {
    const waiting = view && Array.isArray(view.waiting) ? view.waiting.filter((w) => w && typeof w.peer === 'string') : [];
    const list = $('op-waiting-list');
    const now = new Set(waiting.map((w) => w.peer));
    for (const w of waiting) {
      let item = seenWaiting.get(w.peer);
      if (!item) {
        item = document.createElement('li');
        item.className = 'op-waiting-peer';
        seenWaiting.set(w.peer, item);
        list.append(item);
      }
      const since = Date.parse(w.since);
      const label = typeof w.label === 'string' && w.label ? w.label : 'A ' + (w.role === 'receiver' ? 'decoder' : 'camera');
      text(item, label + ' — waiting for the producer' + (Number.isFinite(since) ? ' since ' + new Date(since).toLocaleTimeString() : ''));
      item.dataset.state = 'waiting';
    }
    for (const [peer, item] of seenWaiting) {
      if (!now.has(peer) && item.dataset.state === 'waiting') {
        item.dataset.state = 'left';
        text(item, item.textContent.split(' — ')[0] + ' — no longer waiting: the producer decided');
      }
    }
    $('op-waiting-none').hidden = waiting.length > 0;
    showSettings(null);
  }

  function apply(view) {
    if (role === null) return applyVenue(view);
    const s = view && Array.isArray(view.streams) ? view.streams.find((x) => x.name === stream) : null;
    if (!s) return;
    const tally = TALLY[s.tally] ? s.tally : 'off';
    document.body.dataset.tally = tally;
    text($('op-tally-text'), TALLY[tally]);
    const me = s[role] || {};
    const status = me.status === 'connected' ? 'connected' : me.status === 'registered' ? 'registered' : 'waiting';
    $('op-link').dataset.status = status;
    const via = s.via ? ' (' + s.via + ')' : '';
    const path = s.path === 'relay' ? 'relayed' + via : s.path === 'tunnel' ? 'tunnelled over TCP' + via : s.path === 'direct' ? 'direct' + via : '';
    text($('op-link'), 'Link: ' + status + (path ? ' · ' + path : ''));
    const h = me.last_health || {};
    const parts = [fmt(h.bitrate / 1e6, 'Mbit/s', 1), fmt(h.rtt, 'ms RTT', 0), fmt(h.loss, '% loss', 1)].filter(Boolean);
    text($('op-health'), parts.join(' · '));
    showCue(s.cue);
    showSettings(me);
  }

  function live(status, label) {
    $('op-live').dataset.status = status;
    text($('op-live'), label);
  }

  function connect() {
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const ws = new WebSocket(scheme + '//' + location.host + '/api/ws/' + encodeURIComponent(session) + '?t=' + encodeURIComponent(token));
    ws.addEventListener('open', () => {
      ws.send(JSON.stringify({ type: 'watch' }));
      live('live', 'Live');
      backoff = 500;
    });
    ws.addEventListener('message', (e) => {
      let msg;
      try {
        msg = JSON.parse(e.data);
      } catch (_) {
        return;
      }
      if (msg.type === 'view') apply(msg);
      else if (msg.type === 'cue' && msg.stream === stream) showCue(msg);
      else if (msg.type === 'closed') {
        live('down', 'Session ended: ' + msg.reason);
        backoff = null;
      }
    });
    ws.addEventListener('close', () => {
      if (backoff === null) return;
      live('down', 'Reconnecting…');
      setTimeout(connect, backoff);
      backoff = Math.min(backoff * 2, 10000);
    });
  }

  if (role === null) {
    // the venue page: the waiting room instead of a side's tally and link
    $('op-tally').hidden = true;
    document.querySelector('.op-link').hidden = true;
    $('op-waiting').hidden = false;
    text($('op-settings-title'), 'What to point the cameras at');
  }
  apply(initial.view);
  connect();
})();
