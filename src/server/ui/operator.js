// The camera-operator page (GET /j/:session?t=STREAM_TOKEN): full-screen tally, the last cue,
// the link's state and health, and the settings of this side. It paints from the view embedded
// in the page, then follows `view` and `cue` messages on the session WebSocket, watching with the
// stream token (which reads this stream only). Everything shown is set as text, never markup.
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

  function apply(view) {
    const s = view && Array.isArray(view.streams) ? view.streams.find((x) => x.name === stream) : null;
    if (!s) return;
    const tally = TALLY[s.tally] ? s.tally : 'off';
    document.body.dataset.tally = tally;
    text($('op-tally-text'), TALLY[tally]);
    const me = s[role] || {};
    const status = me.status === 'connected' ? 'connected' : me.status === 'registered' ? 'registered' : 'waiting';
    $('op-link').dataset.status = status;
    const via = s.via ? ' (' + s.via + ')' : '';
    const path = s.path === 'relay' ? 'relayed' + via : s.path === 'direct' ? 'direct' + via : '';
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

  apply(initial.view);
  connect();
})();
