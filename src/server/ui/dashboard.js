// Punch operator dashboard.
//
// Plain ES2020, no build step, no dependencies. The page is served with a strict CSP
// (script-src 'self', style-src 'self', connect-src 'self'): the DOM is built with
// createElement/textContent only, never from HTML strings, and nothing sets inline styles.
//
// Data flow: the server renders the header and embeds the session view as JSON in
// <script type="application/json" id="punch-initial">; this script renders the streams from
// it, then keeps them current from `view` messages on the session WebSocket. Controls call
// the HTTP API with the admin token from the page URL (?t=...) as a Bearer token and wait
// for the resulting view instead of trusting their own guess.
'use strict';

(function () {
  const SVG_NS = 'http://www.w3.org/2000/svg';
  const TALLY_STATES = ['on-air', 'preview', 'off'];
  const TALLY_LABELS = { 'on-air': 'On air', preview: 'Preview', off: 'Off' };
  const ROLES = ['sender', 'receiver'];
  const ROLE_CAPTION = { sender: 'Camera (sender)', receiver: 'Decoder (receiver)' };
  const ROLE_DEVICE = { sender: 'camera', receiver: 'decoder' };
  const LEVEL_TEXT = { green: 'Healthy', amber: 'Degraded', red: 'Failing', none: 'No health yet' };
  const STATUS_TEXT = { waiting: 'Waiting', registered: 'Registered', connected: 'Connected' };
  const FORMAT_ORDER = ['punch', 'gstreamer', 'srt_live_transmit', 'ffmpeg', 'obs', 'vmix'];
  const FORMAT_LABELS = {
    punch: 'Punch URI (punchsink / punchsrc)',
    gstreamer: 'GStreamer (srtsink / srtsrc)',
    srt_live_transmit: 'srt-live-transmit',
    ffmpeg: 'FFmpeg',
    obs: 'OBS Studio',
    vmix: 'vMix',
  };
  const VMIX_LABELS = {
    type: 'Type',
    hostname: 'Hostname',
    port: 'Port',
    latency_ms: 'Latency (ms)',
    passphrase: 'Passphrase',
    key_length: 'Key length',
  };
  const CONNECT_SIDES = [
    ['for_peer_a', 'For the camera (sender)'],
    ['for_peer_b', 'For the decoder (receiver)'],
  ];
  const LATENCY_MIN = 20;
  const LATENCY_MAX = 8000;
  const BACKOFF_MIN = 1000;
  const BACKOFF_MAX = 10000;
  const STALE_HEALTH_MS = 15000;

  // ---- page parameters -------------------------------------------------------------------

  const params = new URLSearchParams(location.search);
  const token = params.get('t') || params.get('token') || '';
  const pathMatch = location.pathname.match(/^\/s\/([^/]+)\/?$/);
  const sessionId = pathMatch ? safeDecode(pathMatch[1]) : '';
  const apiBase = '/api/session/' + encodeURIComponent(sessionId);

  const app = {
    view: null,
    closed: false,
    cards: new Map(),
    // The wall of tiles (sessions with several streams): name -> tile, and which view shows.
    tiles: new Map(),
    mode: null,
    // The waiting room: the stream the operator chose for each waiting peer, and what was drawn.
    waitingChoice: new Map(),
    // the name typed for a new stream, per waiting peer (the room is redrawn as it changes)
    waitingName: new Map(),
    waitingKey: '',
    ws: null,
    wsLive: false,
    backoff: BACKOFF_MIN,
    reconnectTimer: null,
    bannerTimer: null,
    connect: { inflight: false, dirty: false, timer: null, keys: new Map(), result: null },
  };

  // ---- small helpers ---------------------------------------------------------------------

  function safeDecode(s) {
    try {
      return decodeURIComponent(s);
    } catch (_) {
      return s;
    }
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    if (attrs) {
      for (const [key, value] of Object.entries(attrs)) {
        if (value === null || value === undefined || value === false) continue;
        if (key === 'class') node.className = value;
        else if (key === 'text') node.textContent = value;
        else node.setAttribute(key, value === true ? '' : String(value));
      }
    }
    for (const child of children) {
      if (child !== null && child !== undefined) node.append(child);
    }
    return node;
  }

  function svgEl(tag, attrs) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
    return node;
  }

  function setText(node, text) {
    const value = text === null || text === undefined ? '' : String(text);
    if (node.textContent !== value) node.textContent = value;
  }

  function setAttr(node, name, value) {
    const v = String(value);
    if (node.getAttribute(name) !== v) node.setAttribute(name, v);
  }

  function isNum(v) {
    return typeof v === 'number' && Number.isFinite(v);
  }

  function fixed(v, digits) {
    return v.toFixed(digits);
  }

  function fmtMs(v) {
    if (!isNum(v)) return '—';
    return (v < 10 ? fixed(v, 1) : String(Math.round(v))) + ' ms';
  }

  function fmtPct(v) {
    if (!isNum(v)) return '—';
    return (v < 10 ? fixed(v, 1) : String(Math.round(v))) + ' %';
  }

  function fmtBitrate(v) {
    if (!isNum(v)) return '—';
    if (v >= 1e9) return fixed(v / 1e9, 2) + ' Gbit/s';
    if (v >= 1e6) {
      const m = v / 1e6;
      return fixed(m, m >= 100 ? 0 : m >= 10 ? 1 : 2) + ' Mbit/s';
    }
    if (v >= 1e3) return Math.round(v / 1e3) + ' kbit/s';
    return Math.round(v) + ' bit/s';
  }

  function fmtAddr(a) {
    if (!a || typeof a.ip !== 'string') return '—';
    const host = a.ip.includes(':') ? '[' + a.ip + ']' : a.ip;
    return isNum(a.port) ? host + ':' + a.port : host;
  }

  function parseTime(s) {
    if (typeof s !== 'string') return NaN;
    return Date.parse(s);
  }

  function fmtAge(ms) {
    if (!isNum(ms)) return '';
    const s = Math.max(0, Math.round(ms / 1000));
    if (s < 3) return 'just now';
    if (s < 60) return s + ' s ago';
    if (s < 3600) return Math.floor(s / 60) + ' min ago';
    if (s < 86400) return Math.floor(s / 3600) + ' h ' + (Math.floor(s / 60) % 60) + ' min ago';
    return Math.floor(s / 86400) + ' d ago';
  }

  function fmtCountdown(ms) {
    const s = Math.max(0, Math.round(ms / 1000));
    if (s < 60) return s + ' s';
    if (s < 3600) return Math.floor(s / 60) + ' min ' + String(s % 60).padStart(2, '0') + ' s';
    return Math.floor(s / 3600) + ' h ' + (Math.floor(s / 60) % 60) + ' min';
  }

  function shortValue(v) {
    let s;
    if (typeof v === 'string') s = v;
    else {
      try {
        s = JSON.stringify(v);
      } catch (_) {
        s = String(v);
      }
    }
    return s.length > 80 ? s.slice(0, 79) + '…' : s;
  }

  // JSON embedded by the server. Parsed as JSON first; if the server HTML-escaped it
  // (entities are *not* decoded inside <script>), decode the usual entities and retry.
  function readInitialView() {
    const node = document.getElementById('punch-initial');
    if (!node) return null;
    const raw = node.textContent.trim();
    if (!raw || raw.startsWith('{{')) return null;
    try {
      return JSON.parse(raw);
    } catch (_) {
      /* fall through */
    }
    try {
      return JSON.parse(decodeEntities(raw));
    } catch (_) {
      return null;
    }
  }

  function decodeEntities(s) {
    const named = { quot: '"', amp: '&', lt: '<', gt: '>', apos: "'" };
    return s.replace(/&(#[xX][0-9a-fA-F]+|#[0-9]+|quot|amp|lt|gt|apos);/g, (m, e) => {
      if (e[0] !== '#') return named[e];
      const code = e[1] === 'x' || e[1] === 'X' ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10);
      try {
        return String.fromCodePoint(code);
      } catch (_) {
        return m;
      }
    });
  }

  // ---- HTTP API --------------------------------------------------------------------------

  async function api(method, path, body) {
    const headers = { Authorization: 'Bearer ' + token, Accept: 'application/json' };
    const init = { method, headers, cache: 'no-store', credentials: 'omit' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(path, init);
    } catch (_) {
      return { ok: false, status: 0, data: null, code: 'network', message: 'the Punch server is unreachable' };
    }
    let data = null;
    try {
      const text = await res.text();
      data = text ? JSON.parse(text) : null;
    } catch (_) {
      data = null;
    }
    const err = data && typeof data === 'object' && data.error && typeof data.error === 'object' ? data.error : null;
    const message = err && err.message ? String(err.message) : res.ok ? '' : 'HTTP ' + res.status;
    const code = err && err.code ? String(err.code) : '';
    if (res.status === 410) markClosed(message || 'the session has ended');
    return { ok: res.ok, status: res.status, data, code, message };
  }

  // ---- banner and live indicator -----------------------------------------------------------

  function showBanner(text, kind, timeoutMs) {
    const banner = document.getElementById('banner');
    if (!banner) return;
    // The closed banner stays; later transient errors do not replace it.
    if (app.closed && kind !== 'closed' && banner.dataset.kind === 'closed') return;
    clearTimeout(app.bannerTimer);
    setText(banner, text);
    banner.dataset.kind = kind;
    banner.hidden = false;
    if (timeoutMs) {
      app.bannerTimer = setTimeout(() => {
        if (banner.dataset.kind !== 'closed') banner.hidden = true;
      }, timeoutMs);
    }
  }

  function setLive(status, text) {
    const live = document.getElementById('live');
    if (!live) return;
    const labels = {
      connecting: 'Connecting…',
      live: 'Live',
      reconnecting: 'Reconnecting…',
      closed: 'Closed',
      offline: 'Offline',
    };
    setAttr(live, 'data-status', status);
    setText(live, text || labels[status] || status);
  }

  // ---- sparkline -------------------------------------------------------------------------

  // The receivers of a stream with several: one row per receiver slot (its own SRT link from
  // the sender), and what the sender sends in all.
  class ReceiversPanel {
    constructor() {
      this.total = el('span', { class: 'receivers-total' });
      this.list = el('ol', { class: 'receiver-list' });
      this.rows = new Map();
      this.root = el(
        'div',
        { class: 'panel receivers-panel', hidden: true },
        el('div', { class: 'panel-head' }, el('h3', { text: 'Receivers' }), this.total),
        this.list,
      );
    }

    update(s) {
      const links = Array.isArray(s.receivers) ? s.receivers.filter((l) => l && isNum(l.receiver)) : [];
      this.root.hidden = links.length === 0;
      const linked = links.filter((l) => l.state === 'CONNECTED' || l.state === 'RELAYING').length;
      setText(
        this.total,
        linked + ' of ' + links.length + ' linked · sending ' + (isNum(s.sent_bitrate) ? fmtBitrate(s.sent_bitrate) : '—') + ' in all',
      );
      const seen = new Set();
      for (const l of links) {
        seen.add(l.receiver);
        let row = this.rows.get(l.receiver);
        if (!row) {
          row = {
            name: el('span', { class: 'receiver-name' }),
            state: el('span', { class: 'state-badge' }),
            path: el('span', { class: 'receiver-path' }),
            figures: el('span', { class: 'receiver-figures' }),
          };
          row.root = el('li', { class: 'receiver-row', 'data-receiver': String(l.receiver) }, row.name, row.state, row.path, row.figures);
          this.rows.set(l.receiver, row);
          this.list.append(row.root);
        }
        const state = typeof l.state === 'string' ? l.state : 'WAITING';
        const peer = l.receiver_peer && typeof l.receiver_peer === 'object' ? l.receiver_peer : {};
        const label = peer.meta && typeof peer.meta.label === 'string' && peer.meta.label ? peer.meta.label : null;
        const addr = peer.address && typeof peer.address.ip === 'string' ? peer.address.ip + ':' + peer.address.port : null;
        setText(row.name, 'Receiver ' + l.receiver + (label ? ' · ' + label : addr ? ' · ' + addr : ''));
        setAttr(row.root, 'data-state', state);
        setAttr(row.state, 'data-state', state);
        setText(row.state, state);
        setText(row.path, l.path === 'direct' ? 'Direct' : l.path === 'relay' ? 'Relayed' : '');
        // the sender's figures on this link (what it sends to this receiver), else the receiver's
        const sent = l.sender && l.sender.last_health ? l.sender.last_health : null;
        const h = sent || peer.last_health || {};
        const parts = [];
        if (isNum(h.bitrate)) parts.push(fmtBitrate(h.bitrate));
        if (isNum(h.rtt)) parts.push('RTT ' + fmtMs(h.rtt));
        if (isNum(h.loss) && h.loss > 0) parts.push('loss ' + fmtPct(h.loss));
        setText(row.figures, parts.join(' · '));
      }
      for (const [k, row] of this.rows) {
        if (!seen.has(k)) {
          row.root.remove();
          this.rows.delete(k);
        }
      }
    }
  }

  class Sparkline {
    constructor(kind, label, format) {
      this.kind = kind;
      this.format = format;
      this.width = 240;
      this.height = 48;
      this.value = el('span', { class: 'spark-value', text: '—' });
      this.max = el('span', { class: 'spark-max' });
      this.svg = svgEl('svg', {
        class: 'spark-svg',
        width: this.width,
        height: this.height,
        viewBox: '0 0 ' + this.width + ' ' + this.height,
        preserveAspectRatio: 'none',
        role: 'img',
        'aria-label': label + ' history',
      });
      this.root = el(
        'div',
        { class: 'spark spark-' + kind },
        el('div', { class: 'spark-head' }, el('span', { class: 'spark-label', text: label }), this.value),
        this.svg,
        this.max,
      );
      this.lastKey = '';
    }

    update(history) {
      const points = Array.isArray(history)
        ? history.map((h, i) => ({ t: h && isNum(h.t) ? h.t : i, v: h && isNum(h[this.kind]) ? h[this.kind] : null }))
        : [];
      const key = JSON.stringify(points);
      if (key === this.lastKey) return;
      this.lastKey = key;
      while (this.svg.firstChild) this.svg.firstChild.remove();
      const values = points.filter((p) => p.v !== null);
      const last = points.length ? points[points.length - 1].v : null;
      setText(this.value, last === null ? '—' : this.format(last));
      if (!values.length) {
        setText(this.max, points.length ? 'no samples' : 'no history yet');
        return;
      }
      const maxV = Math.max(...values.map((p) => p.v));
      setText(this.max, 'max ' + this.format(maxV) + ' · ' + points.length + ' samples');
      const top = maxV > 0 ? maxV * 1.15 : 1;
      const t0 = points[0].t;
      const t1 = points[points.length - 1].t;
      const span = t1 > t0 ? t1 - t0 : 1;
      const pad = 2;
      const x = (t) => (points.length === 1 ? this.width - pad : pad + ((t - t0) / span) * (this.width - 2 * pad));
      const y = (v) => this.height - pad - (v / top) * (this.height - 2 * pad);
      this.svg.append(
        svgEl('line', {
          class: 'spark-base',
          x1: 0,
          x2: this.width,
          y1: this.height - pad,
          y2: this.height - pad,
          'vector-effect': 'non-scaling-stroke',
        }),
      );
      // One polyline per run of samples without gaps; a lone sample is a dot.
      let run = [];
      const flush = () => {
        if (run.length === 1) {
          this.svg.append(svgEl('circle', { class: 'spark-dot', cx: run[0][0], cy: run[0][1], r: 2 }));
        } else if (run.length > 1) {
          this.svg.append(
            svgEl('polyline', {
              class: 'spark-line',
              points: run.map((p) => p[0].toFixed(1) + ',' + p[1].toFixed(1)).join(' '),
              'vector-effect': 'non-scaling-stroke',
            }),
          );
        }
        run = [];
      };
      for (const p of points) {
        if (p.v === null) flush();
        else run.push([x(p.t), y(p.v)]);
      }
      flush();
    }
  }

  // ---- one side of a stream ----------------------------------------------------------------

  class PeerPanel {
    constructor(card, role) {
      this.role = role;
      const caption = ROLE_CAPTION[role];
      this.status = el('span', { class: 'peer-status', 'data-status': 'waiting', text: STATUS_TEXT.waiting });

      const qrSrc =
        '/s/' +
        encodeURIComponent(sessionId) +
        '/qr/' +
        encodeURIComponent(card.name) +
        '/' +
        role +
        '?t=' +
        encodeURIComponent(token);
      this.qr = el('img', {
        class: 'qr',
        'data-role': role,
        src: qrSrc,
        alt: 'QR code registering the ' + ROLE_DEVICE[role] + ' of stream ' + card.name,
        width: 168,
        height: 168,
        decoding: 'async',
      });
      this.qrButton = el(
        'button',
        { class: 'qr-zoom', type: 'button', title: 'Show larger', 'aria-expanded': 'false' },
        this.qr,
      );
      this.figure = el(
        'figure',
        { class: 'qr-figure' },
        this.qrButton,
        el('figcaption', { class: 'qr-caption', text: caption }),
      );
      this.qr.addEventListener('error', () => this.figure.classList.add('qr-failed'));
      this.qr.addEventListener('load', () => this.figure.classList.remove('qr-failed'));
      this.qrButton.addEventListener('click', () => {
        const big = this.figure.classList.toggle('enlarged');
        setAttr(this.qrButton, 'aria-expanded', big ? 'true' : 'false');
      });

      this.address = el('dd', { text: '—' });
      this.device = el('dd', { text: '—' });
      this.srt = el('dd', { text: '—' });
      this.nat = el('dd', { text: '—' });
      this.mapped = el('dd', { text: '—' });
      this.registered = el('dd', { text: '—' });
      // A side held by an SRT device: what to type into it.
      this.deviceUrl = el('code', { class: 'device-url' });
      this.deviceFields = el('dd', { class: 'device-fields' });
      this.deviceRow = el('div', { class: 'device-row', hidden: true }, el('dt', { text: 'SRT device' }), this.deviceFields);
      this.extra = el('div', { class: 'peer-extra' });
      const info = el(
        'dl',
        { class: 'peer-info' },
        el('div', null, el('dt', { text: 'Address' }), this.address),
        el('div', null, el('dt', { text: 'Device' }), this.device),
        el('div', null, el('dt', { text: 'SRT' }), this.srt),
        el('div', null, el('dt', { text: 'NAT' }), this.nat),
        el('div', null, el('dt', { text: 'Mapped' }), this.mapped),
        el('div', null, el('dt', { text: 'Registered' }), this.registered),
        this.deviceRow,
        this.extra,
      );

      this.metrics = {};
      const metricDefs = [
        ['rtt', 'RTT'],
        ['retransmit', 'Retransmit'],
        ['bitrate', 'Bitrate'],
        ['loss', 'Loss'],
        ['latency', 'Latency'],
      ];
      const metricsBox = el('div', { class: 'metrics' });
      for (const [key, label] of metricDefs) {
        const value = el('span', { class: 'metric-value', text: '—' });
        this.metrics[key] = value;
        metricsBox.append(
          el('div', { class: 'metric', 'data-metric': key }, el('span', { class: 'metric-label', text: label }), value),
        );
      }
      this.healthAge = el('p', { class: 'health-age', text: 'no health report yet' });
      this.healthAt = NaN;
      this.registeredAt = NaN;
      this.lastExtraKey = '';

      // Who holds this side: a Punch peer or an SRT device (PUT .../stream/NAME/ROLE).
      this.card = card;
      this.holder = el(
        'select',
        { class: 'side-holder', 'aria-label': 'Who holds the ' + caption + ' of ' + card.name },
        el('option', { value: '', text: 'Punch peer' }),
        el('option', { value: 'caller', text: 'SRT caller device' }),
        el('option', { value: 'listener', text: 'SRT listener device' }),
      );
      this.holderAddress = el('input', { class: 'side-address', type: 'text', placeholder: 'ip:port the device listens at', hidden: true });
      this.holderApply = el('button', { class: 'side-apply', type: 'button', text: 'Apply' });
      this.holderMsg = el('span', { class: 'latency-msg', 'aria-live': 'polite' });
      this.holder.addEventListener('change', () => {
        this.holderAddress.hidden = this.holder.value !== 'listener';
      });
      this.holderApply.addEventListener('click', () => this.setHolder());
      const holderBox = (this.holderBox = el(
        'details',
        { class: 'side-holder-box' },
        el('summary', { text: 'Held by…' }),
        el('div', { class: 'latency-manual-row' }, this.holder, this.holderAddress, this.holderApply),
        this.holderMsg,
      ));

      this.root = el(
        'div',
        { class: 'peer', 'data-role': role, 'data-status': 'waiting' },
        el('div', { class: 'peer-head' }, el('h3', { class: 'peer-title', text: caption }), this.status),
        el('div', { class: 'peer-body' }, this.figure, el('div', { class: 'peer-details' }, info)),
        metricsBox,
        this.healthAge,
        holderBox,
      );
    }

    async setHolder() {
      if (app.closed) return;
      const mode = this.holder.value;
      const body = mode ? { device: mode } : {};
      if (mode === 'listener') body.address = this.holderAddress.value.trim();
      const r = await api('PUT', apiBase + '/stream/' + encodeURIComponent(this.card.name) + '/' + this.role, body);
      this.holderMsg.dataset.kind = r.ok ? 'info' : 'error';
      setText(this.holderMsg, r.ok ? 'Changed.' : r.message);
      if (r.ok && !app.wsLive) refreshView();
    }

    update(p) {
      const peer = p && typeof p === 'object' ? p : {};
      const status = STATUS_TEXT[peer.status] ? peer.status : 'waiting';
      setAttr(this.root, 'data-status', status);
      setAttr(this.status, 'data-status', status);
      setText(this.status, STATUS_TEXT[status]);

      setText(this.address, fmtAddr(peer.address));
      const meta = peer.meta && typeof peer.meta === 'object' ? peer.meta : {};
      const device = [meta.label, meta.audio ? 'audio ' + meta.audio : null].filter((v) => typeof v === 'string' && v);
      setText(this.device, device.length ? device.map(shortValue).join(' · ') : '—');
      setText(this.srt, peer.srt || '—');
      setAttr(this.srt, 'data-srt', peer.srt || 'none');
      setText(this.nat, natText(peer.nat));
      setText(this.mapped, peer.nat && peer.nat.mapped ? fmtAddr(peer.nat.mapped) : '—');
      const dev = peer.device && typeof peer.device === 'object' ? peer.device : null;
      this.deviceRow.hidden = !dev;
      if (!this.holderBox.open) {
        this.holder.value = dev && (dev.mode === 'caller' || dev.mode === 'listener') ? dev.mode : '';
        this.holderAddress.hidden = this.holder.value !== 'listener';
      }
      if (dev) {
        const parts = [String(dev.mode) + ' device', 'host ' + dev.host, 'port ' + dev.port, 'latency ' + dev.latency + ' ms'];
        if (dev.streamid) parts.push('stream ID ' + dev.streamid);
        const key = JSON.stringify(dev);
        if (key !== this.lastDeviceKey) {
          this.lastDeviceKey = key;
          setText(this.deviceUrl, dev.url || '');
          this.deviceFields.replaceChildren(el('span', { text: parts.join(' · ') }), el('br'), this.deviceUrl);
        }
      }

      const extras = Object.entries(meta).filter(([k]) => k !== 'label' && k !== 'audio').slice(0, 8);
      const extraKey = JSON.stringify(extras);
      if (extraKey !== this.lastExtraKey) {
        this.lastExtraKey = extraKey;
        this.extra.replaceChildren(
          ...extras.map(([k, v]) => el('div', null, el('dt', { text: shortValue(k) }), el('dd', { text: shortValue(v) }))),
        );
      }

      const h = peer.last_health && typeof peer.last_health === 'object' ? peer.last_health : {};
      setText(this.metrics.rtt, fmtMs(h.rtt));
      setText(this.metrics.retransmit, fmtPct(h.retransmit));
      setText(this.metrics.bitrate, fmtBitrate(h.bitrate));
      setText(this.metrics.loss, fmtPct(h.loss));
      setText(this.metrics.latency, fmtMs(h.latency));
      this.healthAt = parseTime(peer.health_at);
      this.registeredAt = parseTime(peer.registered_at);
      this.tick(Date.now());
    }

    tick(now) {
      if (isNum(this.healthAt)) {
        const age = now - this.healthAt;
        setText(this.healthAge, 'health reported ' + fmtAge(age));
        this.root.classList.toggle('stale', age > STALE_HEALTH_MS);
      } else {
        setText(this.healthAge, 'no health report yet');
        this.root.classList.remove('stale');
      }
      setText(this.registered, isNum(this.registeredAt) ? fmtAge(now - this.registeredAt) : '—');
    }
  }

  function natText(nat) {
    if (!nat || typeof nat !== 'object') return 'not probed';
    const names = {
      'endpoint-independent': 'endpoint-independent (cone)',
      'endpoint-dependent': 'endpoint-dependent (symmetric)',
      unknown: 'unknown',
    };
    return names[nat.mapping] || String(nat.mapping || 'unknown');
  }

  // ---- one stream ------------------------------------------------------------------------

  class StreamCard {
    constructor(name) {
      this.name = name;
      this.tally = 'off';
      this.latency = null;
      this.recommended = null;
      this.pendingTally = null;
      this.pendingTimer = null;
      this.connectKey = null;

      const titleId = 'stream-title-' + name;
      this.title = el('h2', { class: 'stream-title', id: titleId, text: name });
      this.streamId = el('span', { class: 'stream-id' });
      this.tags = el('span', { class: 'stream-tags' });
      this.stateBadge = el('span', { class: 'state-badge', 'data-state': 'WAITING', text: 'WAITING' });
      this.pathBadge = el('span', { class: 'path-badge', 'data-path': 'none', text: 'Path pending' });
      this.pathReason = el('span', { class: 'path-reason' });
      this.levelBadge = el('span', { class: 'level-badge', 'data-level': 'none', text: LEVEL_TEXT.none });
      this.levelReason = el('span', { class: 'level-reason' });

      const head = el(
        'header',
        { class: 'stream-head' },
        el('div', { class: 'stream-name-row' }, this.title, this.streamId, this.tags),
        el('div', { class: 'stream-badges' }, this.stateBadge, this.levelBadge, this.pathBadge),
        el('div', { class: 'stream-reasons' }, this.levelReason, this.pathReason),
      );

      // Tally.
      this.tallyState = el('strong', { class: 'tally-state', text: 'off' });
      this.tallyButtons = {};
      const buttons = el('div', { class: 'tally-buttons', role: 'group', 'aria-label': 'Tally for ' + name });
      for (const state of TALLY_STATES) {
        const b = el('button', {
          class: 'tally',
          type: 'button',
          'data-state': state,
          'aria-pressed': state === 'off' ? 'true' : 'false',
          text: TALLY_LABELS[state],
        });
        b.addEventListener('click', () => this.setTally(state));
        this.tallyButtons[state] = b;
        buttons.append(b);
      }
      const tallyBox = el(
        'div',
        { class: 'panel tally-panel' },
        el('div', { class: 'panel-head' }, el('h3', { text: 'Tally' }), this.tallyState),
        buttons,
      );

      // Latency.
      this.latencyCurrent = el('strong', { class: 'latency-current', text: '—' });
      this.recMain = el('p', { class: 'rec-main', text: 'No recommendation yet' });
      this.recDetail = el('p', { class: 'rec-detail', text: 'Needs health reports from a connected link.' });
      this.recNote = el('p', { class: 'rec-note' });
      this.applyButton = el('button', { class: 'apply-latency', type: 'button', disabled: true, text: 'Apply' });
      this.applyButton.addEventListener('click', () => {
        if (isNum(this.recommended)) this.setLatency(this.recommended);
      });
      const inputId = 'latency-input-' + name;
      this.latencyInput = el('input', {
        class: 'latency-input',
        id: inputId,
        type: 'number',
        inputmode: 'numeric',
        min: LATENCY_MIN,
        max: LATENCY_MAX,
        step: 1,
        placeholder: 'ms',
      });
      this.setButton = el('button', { class: 'set-latency', type: 'button', text: 'Set' });
      this.latencyMsg = el('span', { class: 'latency-msg', 'aria-live': 'polite' });
      this.setButton.addEventListener('click', () => this.setManualLatency());
      this.latencyInput.addEventListener('keydown', (e) => {
        if (e.key === 'Enter') {
          e.preventDefault();
          this.setManualLatency();
        }
      });
      const latencyBox = el(
        'div',
        { class: 'panel latency-panel' },
        el(
          'div',
          { class: 'panel-head' },
          el('h3', { text: 'Latency' }),
          el('span', { class: 'latency-now' }, this.latencyCurrent, el('span', { class: 'muted', text: ' configured' })),
        ),
        el('div', { class: 'latency-recommendation' }, this.recMain, this.recDetail, this.recNote, this.applyButton),
        el(
          'div',
          { class: 'latency-manual' },
          el('label', { for: inputId, text: 'Set manually (' + LATENCY_MIN + '–' + LATENCY_MAX + ' ms)' }),
          el('div', { class: 'latency-manual-row' }, this.latencyInput, this.setButton),
          this.latencyMsg,
        ),
      );

      // Cues to the people at this stream.
      const cueId = 'cue-input-' + name;
      this.cueInput = el('input', { class: 'cue-input', id: cueId, type: 'text', maxlength: 280, placeholder: 'Cue for the camera operator' });
      this.cueButton = el('button', { class: 'send-cue', type: 'button', text: 'Send cue' });
      this.cueLast = el('p', { class: 'cue-last', 'aria-live': 'polite' });
      this.cueButton.addEventListener('click', () => this.sendCue());
      this.cueInput.addEventListener('keydown', (e) => {
        if (e.key === 'Enter') {
          e.preventDefault();
          this.sendCue();
        }
      });
      const cueBox = el(
        'div',
        { class: 'panel cue-panel' },
        el('div', { class: 'panel-head' }, el('label', { for: cueId }, el('h3', { text: 'Cue' }))),
        el('div', { class: 'latency-manual-row' }, this.cueInput, this.cueButton),
        this.cueLast,
      );

      // Sides.
      this.peers = { sender: new PeerPanel(this, 'sender'), receiver: new PeerPanel(this, 'receiver') };

      this.receivers = new ReceiversPanel();

      // History.
      this.sparks = [new Sparkline('bitrate', 'Bitrate', fmtBitrate), new Sparkline('rtt', 'RTT', fmtMs)];

      // Connection strings.
      this.connectStatus = el('span', { class: 'connect-status', text: 'loading…' });
      this.connectBody = el('div', { class: 'connect', 'data-status': 'loading' });
      this.connectDetails = el(
        'details',
        { class: 'connect-details' },
        el(
          'summary',
          null,
          el('span', { class: 'connect-title', text: 'Connection strings for other SRT tools' }),
          this.connectStatus,
        ),
        this.connectBody,
      );
      this.lastConnectKey = '';

      this.root = el(
        'section',
        {
          class: 'stream',
          'data-stream': name,
          'data-level': 'none',
          'data-state': 'WAITING',
          'data-tally': 'off',
          'aria-labelledby': titleId,
        },
        head,
        el('div', { class: 'controls' }, tallyBox, latencyBox, cueBox),
        el('div', { class: 'peers' }, this.peers.sender.root, this.peers.receiver.root),
        this.receivers.root,
        el('div', { class: 'history' }, ...this.sparks.map((s) => s.root)),
        this.connectDetails,
      );
      if (app.closed) this.disable();
    }

    update(s) {
      setText(this.title, s.label || s.name);
      setText(this.streamId, s.label ? s.name : '');
      const tags = [s.role, s.audio ? 'audio ' + s.audio : null].filter((v) => typeof v === 'string' && v);
      setText(this.tags, tags.join(' · '));

      const state = typeof s.state === 'string' ? s.state : 'WAITING';
      setAttr(this.root, 'data-state', state);
      setAttr(this.stateBadge, 'data-state', state);
      setText(this.stateBadge, state);

      const level = s.level === 'green' || s.level === 'amber' || s.level === 'red' ? s.level : 'none';
      setAttr(this.root, 'data-level', level);
      setAttr(this.levelBadge, 'data-level', level);
      setText(this.levelBadge, LEVEL_TEXT[level]);
      setText(this.levelReason, s.level_reason || '');

      const path = s.path === 'direct' || s.path === 'relay' || s.path === 'tunnel' ? s.path : 'none';
      setAttr(this.pathBadge, 'data-path', path === 'tunnel' ? 'relay' : path);
      const via = typeof s.via === 'string' && s.via ? ' (' + s.via + ')' : '';
      const word = { direct: 'Direct', relay: 'Relayed', tunnel: 'Tunnelled (TCP)' }[path] || 'Path pending';
      setText(this.pathBadge, word + via);
      const cue = s.cue && typeof s.cue === 'object' ? s.cue : null;
      setText(this.cueLast, cue ? 'Last cue' + (cue.role ? ' (' + cue.role + ')' : '') + ': ' + cue.text : '');
      setText(this.pathReason, s.path_reason ? (path === 'relay' ? 'Relayed: ' : '') + s.path_reason : '');

      // Tally from the view only.
      const tally = TALLY_STATES.includes(s.tally) ? s.tally : 'off';
      this.tally = tally;
      setAttr(this.root, 'data-tally', tally);
      setText(this.tallyState, tally);
      setAttr(this.tallyState, 'data-tally', tally);
      for (const st of TALLY_STATES) setAttr(this.tallyButtons[st], 'aria-pressed', st === tally ? 'true' : 'false');
      if (this.pendingTally === tally) this.clearPendingTally();

      // Latency.
      this.latency = isNum(s.latency) ? s.latency : null;
      setText(this.latencyCurrent, this.latency === null ? '—' : Math.round(this.latency) + ' ms');
      if (!this.latencyInput.value && this.latency !== null) setAttr(this.latencyInput, 'placeholder', String(this.latency));
      const rec = s.recommendation && typeof s.recommendation === 'object' ? s.recommendation : null;
      if (rec && isNum(rec.latency)) {
        this.recommended = Math.round(rec.latency);
        setText(this.recMain, 'Recommended: ' + this.recommended + ' ms');
        const parts = [];
        if (isNum(rec.rtt_p95)) parts.push('p95 RTT ' + fmtMs(rec.rtt_p95));
        if (isNum(rec.multiplier)) parts.push('× ' + rec.multiplier);
        if (isNum(rec.loss)) parts.push('loss ' + fmtPct(rec.loss));
        if (isNum(rec.samples)) parts.push(rec.samples + ' samples');
        setText(this.recDetail, parts.join(' · '));
        setText(this.recNote, rec.note || '');
        const same = this.latency !== null && this.recommended === Math.round(this.latency);
        setText(this.applyButton, same ? 'Applied' : 'Apply ' + this.recommended + ' ms');
        this.applyButton.disabled = app.closed || same;
      } else {
        this.recommended = null;
        setText(this.recMain, 'No recommendation yet');
        setText(this.recDetail, 'Needs health reports from a connected link.');
        setText(this.recNote, '');
        setText(this.applyButton, 'Apply');
        this.applyButton.disabled = true;
      }

      this.peers.sender.update(s.sender);
      this.peers.receiver.update(s.receiver);
      this.receivers.update(s);
      for (const spark of this.sparks) spark.update(s.history);
    }

    tick(now) {
      this.peers.sender.tick(now);
      this.peers.receiver.tick(now);
    }

    clearPendingTally() {
      this.pendingTally = null;
      clearTimeout(this.pendingTimer);
      for (const st of TALLY_STATES) this.tallyButtons[st].classList.remove('pending');
    }

    async setTally(state) {
      if (app.closed) return;
      this.clearPendingTally();
      this.pendingTally = state;
      this.tallyButtons[state].classList.add('pending');
      this.pendingTimer = setTimeout(() => this.clearPendingTally(), 8000);
      const r = await api('POST', apiBase + '/tally', { stream: this.name, state });
      if (!r.ok) {
        this.clearPendingTally();
        if (r.status !== 410) showBanner('Tally for ' + this.name + ' failed: ' + r.message, 'error', 10000);
        return;
      }
      // The pressed state comes from the next view; without a live socket, fetch it.
      if (!app.wsLive) refreshView();
    }

    async sendCue() {
      if (app.closed) return;
      const text = this.cueInput.value.trim();
      if (!text) return;
      const r = await api('POST', apiBase + '/cue', { stream: this.name, text });
      if (!r.ok) {
        if (r.status !== 410) showBanner('Cue for ' + this.name + ' failed: ' + r.message, 'error', 10000);
        return;
      }
      this.cueInput.value = '';
      if (!app.wsLive) refreshView();
    }

    setManualLatency() {
      const raw = this.latencyInput.value.trim();
      const n = Number(raw);
      if (!raw || !Number.isInteger(n) || n < LATENCY_MIN || n > LATENCY_MAX) {
        this.latencyMsg.dataset.kind = 'error';
        setText(this.latencyMsg, 'Enter a whole number of milliseconds between ' + LATENCY_MIN + ' and ' + LATENCY_MAX + '.');
        return;
      }
      this.setLatency(n);
    }

    async setLatency(ms) {
      if (app.closed) return;
      this.latencyMsg.dataset.kind = 'info';
      setText(this.latencyMsg, 'Setting ' + ms + ' ms…');
      this.applyButton.disabled = true;
      this.setButton.disabled = true;
      const r = await api('POST', apiBase + '/latency', { stream: this.name, latency: ms });
      this.setButton.disabled = app.closed;
      if (!r.ok) {
        this.latencyMsg.dataset.kind = 'error';
        setText(this.latencyMsg, 'Could not set latency: ' + r.message);
        if (this.recommended !== null) this.applyButton.disabled = app.closed || this.recommended === this.latency;
        return;
      }
      this.latencyInput.value = '';
      this.latencyMsg.dataset.kind = 'ok';
      setText(this.latencyMsg, 'Latency set to ' + ms + ' ms.');
      if (!app.wsLive) refreshView();
    }

    setConnect(entry, message) {
      const key = entry ? JSON.stringify(entry) : 'message:' + message;
      if (key === this.lastConnectKey) return;
      this.lastConnectKey = key;
      if (!entry) {
        setAttr(this.connectBody, 'data-status', 'unavailable');
        setText(this.connectStatus, 'not available yet');
        this.connectBody.replaceChildren(el('p', { class: 'connect-message', text: message }));
        return;
      }
      setAttr(this.connectBody, 'data-status', 'ready');
      setText(this.connectStatus, 'ready');
      const sides = [];
      for (const [key2, heading] of CONNECT_SIDES) {
        const formats = entry[key2];
        if (!formats || typeof formats !== 'object') continue;
        sides.push(renderConnectSide(heading, formats));
      }
      if (!sides.length) sides.push(el('p', { class: 'connect-message', text: 'The server sent no connection strings.' }));
      this.connectBody.replaceChildren(...sides);
    }

    disable() {
      for (const b of Object.values(this.tallyButtons)) b.disabled = true;
      this.applyButton.disabled = true;
      this.setButton.disabled = true;
      this.latencyInput.disabled = true;
      this.cueButton.disabled = true;
      this.cueInput.disabled = true;
    }
  }

  // ---- connection strings ----------------------------------------------------------------

  function formatValueText(name, value) {
    if (typeof value === 'string') return value;
    if (value && typeof value === 'object') {
      return Object.entries(value)
        .map(([k, v]) => (name === 'vmix' && VMIX_LABELS[k] ? VMIX_LABELS[k] : k) + ': ' + shortValue(v))
        .join('\n');
    }
    return String(value);
  }

  function renderConnectSide(heading, formats) {
    const notes = formats.notes && typeof formats.notes === 'object' ? formats.notes : {};
    const names = FORMAT_ORDER.filter((n) => n in formats).concat(
      Object.keys(formats).filter((n) => n !== 'notes' && !FORMAT_ORDER.includes(n)),
    );
    const list = el('div', { class: 'formats' });
    for (const name of names) {
      const value = formats[name];
      if (value === null || value === undefined) continue;
      const text = formatValueText(name, value);
      const pre = el('pre', { class: 'format-value', 'data-format': name, tabindex: 0 }, el('code', { text }));
      const copy = el('button', { class: 'copy', type: 'button', 'aria-label': 'Copy ' + (FORMAT_LABELS[name] || name) });
      copy.textContent = 'Copy';
      copy.addEventListener('click', () => copyText(pre, copy));
      const item = el(
        'div',
        { class: 'format', 'data-format': name },
        el('span', { class: 'format-name', text: FORMAT_LABELS[name] || name }),
        copy,
        pre,
      );
      if (typeof notes[name] === 'string' && notes[name]) item.append(el('p', { class: 'format-note', text: notes[name] }));
      list.append(item);
    }
    return el('div', { class: 'connect-side' }, el('h4', { text: heading }), list);
  }

  async function copyText(pre, button) {
    const text = pre.textContent;
    const done = (label, kind) => {
      button.textContent = label;
      button.dataset.result = kind;
      setTimeout(() => {
        button.textContent = 'Copy';
        delete button.dataset.result;
      }, 2000);
    };
    if (navigator.clipboard && window.isSecureContext) {
      try {
        await navigator.clipboard.writeText(text);
        done('Copied', 'ok');
        return;
      } catch (_) {
        /* fall back to a selection */
      }
    }
    const sel = window.getSelection();
    const range = document.createRange();
    range.selectNodeContents(pre);
    sel.removeAllRanges();
    sel.addRange(range);
    let copied = false;
    try {
      copied = document.execCommand('copy');
    } catch (_) {
      copied = false;
    }
    done(copied ? 'Copied' : 'Selected: press Ctrl+C', copied ? 'ok' : 'selected');
  }

  function connectKeyOf(s) {
    const side = (p) => {
      if (!p || typeof p !== 'object') return '-';
      const mapped = p.nat && p.nat.mapped ? fmtAddr(p.nat.mapped) : '';
      return fmtAddr(p.address) + '/' + mapped;
    };
    return side(s.sender) + '|' + side(s.receiver) + '|' + (s.path || '') + '|' + (isNum(s.latency) ? s.latency : '');
  }

  function scheduleConnectFetch() {
    const c = app.connect;
    if (app.closed) return;
    clearTimeout(c.timer);
    c.timer = setTimeout(fetchConnect, 250);
  }

  async function fetchConnect() {
    const c = app.connect;
    if (app.closed) return;
    if (c.inflight) {
      c.dirty = true;
      return;
    }
    c.inflight = true;
    c.dirty = false;
    const r = await api('GET', apiBase + '/connect');
    c.inflight = false;
    if (r.ok && r.data && r.data.streams && typeof r.data.streams === 'object') {
      for (const card of app.cards.values()) {
        const entry = r.data.streams[card.name];
        if (entry && typeof entry === 'object' && !entry.error) card.setConnect(entry, '');
        else {
          const missing = r.data.missing && r.data.missing[card.name];
          const msg =
            typeof missing === 'string'
              ? missing
              : 'Connection strings appear once both the camera and the decoder of this stream have registered.';
          card.setConnect(null, msg);
        }
      }
    } else if (!app.closed) {
      const msg =
        r.status === 409
          ? r.message
          : r.status === 0
            ? 'Could not load connection strings: ' + r.message + '.'
            : 'Could not load connection strings: ' + r.message;
      for (const card of app.cards.values()) card.setConnect(null, msg);
    }
    if (c.dirty) scheduleConnectFetch();
  }

  // ---- rendering the view ----------------------------------------------------------------

  function applyView(view) {
    if (!view || typeof view !== 'object' || !Array.isArray(view.streams)) return;
    app.view = view;
    const state = typeof view.state === 'string' ? view.state : '';

    const nameNode = document.getElementById('session-name');
    if (nameNode && view.session) setText(nameNode, view.session);
    const stateNode = document.getElementById('session-state');
    if (stateNode && state) {
      setText(stateNode, state);
      setAttr(stateNode, 'data-state', state);
      setAttr(document.body, 'data-state', state);
    }
    document.title = (view.session || sessionId) + ' · ' + (state || '') + ' · Punch';
    updateSummary(Date.now());

    const main = document.getElementById('streams');
    const seen = new Set();
    let connectChanged = false;
    const order = [];
    for (const s of view.streams) {
      if (!s || typeof s.name !== 'string') continue;
      seen.add(s.name);
      let card = app.cards.get(s.name);
      if (!card) {
        card = new StreamCard(s.name);
        app.cards.set(s.name, card);
        connectChanged = true;
      }
      card.update(s);
      const key = connectKeyOf(s);
      if (card.connectKey !== key) {
        card.connectKey = key;
        connectChanged = true;
      }
      order.push(card.root);
    }
    for (const [name, card] of app.cards) {
      if (!seen.has(name)) {
        card.root.remove();
        app.cards.delete(name);
      }
    }
    // Re-append only when the order differs, so focus and loaded images stay put.
    const current = Array.from(main.querySelectorAll(':scope > section.stream'));
    if (current.length !== order.length || current.some((n, i) => n !== order[i])) {
      for (const node of order) main.append(node);
    }
    const empty = document.getElementById('streams-empty');
    if (empty) {
      empty.hidden = order.length > 0;
      setText(empty, 'This session has no streams.');
    }

    updateWall(view.streams);
    updateWaitingRoom(view);

    if (state === 'CLOSED') markClosed('');
    else if (connectChanged) scheduleConnectFetch();
  }

  // ---- the waiting room: peers with the join token, admitted or rejected by a click ----------

  let venueQrSet = false;
  // The choice that makes a new stream for the peer (not a valid stream name: no clash).
  const NEW_STREAM = '+new';

  function freeStreams(view, role) {
    return view.streams.filter((s) => {
      // a stream with several receivers takes receivers while a slot is free (its sender is
      // a punchsink with the stream's token)
      const links = s && Array.isArray(s.receivers) ? s.receivers : [];
      if (links.length > 0) return role === 'receiver' && links.some((l) => l && l.receiver_peer && l.receiver_peer.status === 'waiting');
      const side = s && s[role];
      return side && side.status === 'waiting' && !side.device;
    });
  }

  function updateWaitingRoom(view) {
    const box = document.getElementById('waiting-room');
    const waiting = Array.isArray(view.waiting) ? view.waiting : [];
    box.hidden = !view.join && waiting.length === 0;
    if (box.hidden) return;
    if (view.join && !venueQrSet) {
      venueQrSet = true;
      document.getElementById('venue-qr').src = '/s/' + encodeURIComponent(sessionId) + '/join-qr?t=' + encodeURIComponent(token);
    }
    setText(document.getElementById('waiting-count'), waiting.length ? waiting.length + ' waiting' : 'nobody waiting');
    const list = document.getElementById('waiting-list');
    const side = (p) => [p && p.status, !!(p && p.device)];
    const links = (s) => (Array.isArray(s.receivers) ? s.receivers.map((l) => l && l.receiver_peer && l.receiver_peer.status) : []);
    const key = JSON.stringify([waiting, view.streams.map((s) => [s.name, side(s.sender), side(s.receiver), links(s)])]);
    if (key === app.waitingKey) return;
    app.waitingKey = key;
    list.replaceChildren(
      ...waiting.map((w) => {
        const role = w.role === 'receiver' ? 'receiver' : 'sender';
        const select = el('select', { class: 'admit-stream', 'aria-label': 'Stream for ' + (w.label || w.peer) });
        for (const s of freeStreams(view, role)) {
          select.append(el('option', { value: s.name, text: (s.label || s.name) + ' (' + role + ')' }));
        }
        select.append(el('option', { value: NEW_STREAM, text: 'New stream…' }));
        // what the operator chose stays chosen when the room is redrawn
        const has = (v) => v && Array.from(select.options).some((o) => o.value === v);
        const chosen = app.waitingChoice.get(w.peer);
        if (has(chosen)) select.value = chosen;
        else if (has(w.stream)) select.value = w.stream;

        const newName = el('input', { class: 'admit-new', type: 'text', placeholder: 'name of the new stream', hidden: true });
        // and so does a name being typed
        newName.value = app.waitingName.get(w.peer) || '';
        newName.addEventListener('input', () => app.waitingName.set(w.peer, newName.value));
        const admit = el('button', { class: 'admit', type: 'button', text: 'Admit' });
        const showNew = () => {
          newName.hidden = select.value !== NEW_STREAM;
        };
        showNew();
        select.addEventListener('change', () => {
          app.waitingChoice.set(w.peer, select.value);
          showNew();
        });
        const reject = el('button', { class: 'reject danger', type: 'button', text: 'Reject' });
        const msg = el('span', { class: 'latency-msg', 'aria-live': 'polite' });
        admit.addEventListener('click', async () => {
          const fresh = select.value === NEW_STREAM;
          const body = { peer: w.peer, stream: fresh ? newName.value.trim() : select.value, role };
          if (fresh) body.create = true;
          const r = await api('POST', apiBase + '/admission', body);
          if (!r.ok) setText(msg, r.message);
          else if (!app.wsLive) refreshView();
        });
        reject.addEventListener('click', async () => {
          const r = await api('POST', apiBase + '/admission', { peer: w.peer, reject: true });
          if (!r.ok) setText(msg, r.message);
          else if (!app.wsLive) refreshView();
        });
        return el(
          'li',
          { class: 'waiting-peer', 'data-peer': w.peer },
          el('span', { class: 'waiting-label', text: w.label || w.peer }),
          el('span', { class: 'muted', text: ' wants to be a ' + role + (w.stream ? ' of ' + w.stream : '') }),
          select,
          newName,
          admit,
          reject,
          msg,
        );
      }),
    );
  }

  // ---- the wall: one compact tile per stream -------------------------------------------------

  const STATE_WORD = { WAITING: 'Waiting', READY: 'Ready', RELAYING: 'Relayed', CONNECTED: 'Connected', CLOSED: 'Closed' };

  function makeTile(name) {
    const t = {
      label: el('span', { class: 'tile-label' }),
      state: el('span', { class: 'tile-state' }),
      tally: el('span', { class: 'tile-tally' }),
      bitrate: el('span', { class: 'tile-metric' }),
      rtt: el('span', { class: 'tile-metric' }),
      receivers: el('span', { class: 'tile-metric tile-receivers' }),
    };
    t.root = el(
      'button',
      { class: 'tile', type: 'button', 'data-stream': name, 'data-state': 'WAITING', 'data-level': 'none', 'data-tally': 'off' },
      el('span', { class: 'tile-head' }, t.label, t.tally),
      t.state,
      el('span', { class: 'tile-metrics' }, t.bitrate, t.rtt, t.receivers),
    );
    t.root.addEventListener('click', () => openCard(name));
    return t;
  }

  function updateWall(streams) {
    const wall = document.getElementById('wall');
    const order = [];
    const seen = new Set();
    for (const s of streams) {
      if (!s || typeof s.name !== 'string') continue;
      seen.add(s.name);
      let t = app.tiles.get(s.name);
      if (!t) {
        t = makeTile(s.name);
        app.tiles.set(s.name, t);
      }
      const state = STATE_WORD[s.state] ? s.state : 'WAITING';
      const level = s.level === 'green' || s.level === 'amber' || s.level === 'red' ? s.level : 'none';
      const tally = TALLY_STATES.includes(s.tally) ? s.tally : 'off';
      setAttr(t.root, 'data-state', state);
      setAttr(t.root, 'data-level', level);
      setAttr(t.root, 'data-tally', tally);
      setText(t.label, s.label || s.name);
      setText(t.state, STATE_WORD[state] + (level !== 'none' ? ' · ' + LEVEL_TEXT[level] : ''));
      setText(t.tally, tally === 'on-air' ? 'ON AIR' : tally === 'preview' ? 'PREVIEW' : '');
      // the sender's figures (what it sends, in all with several receivers), else the receiver's
      const h = [s.sender, s.receiver].map((p) => (p && p.last_health) || null).find((x) => x) || {};
      const links = Array.isArray(s.receivers) ? s.receivers : [];
      const sent = links.length > 0 && isNum(s.sent_bitrate) ? s.sent_bitrate : h.bitrate;
      const linked = links.filter((l) => l && (l.state === 'CONNECTED' || l.state === 'RELAYING')).length;
      setText(t.receivers, links.length > 0 ? linked + '/' + links.length + ' receivers' : '');
      setText(t.bitrate, isNum(sent) ? fmtBitrate(sent) : '—');
      setText(t.rtt, isNum(h.rtt) ? 'RTT ' + fmtMs(h.rtt) : 'RTT —');
      setAttr(t.root, 'aria-label', (s.label || s.name) + ': ' + STATE_WORD[state] + (tally !== 'off' ? ', ' + tally : ''));
      order.push(t.root);
    }
    for (const [name, t] of app.tiles) {
      if (!seen.has(name)) {
        t.root.remove();
        app.tiles.delete(name);
      }
    }
    const current = Array.from(wall.children);
    if (current.length !== order.length || current.some((n, i) => n !== order[i])) {
      for (const node of order) wall.append(node);
    }
    // A session of several streams opens on its wall; one stream needs no wall.
    const several = order.length > 1;
    document.getElementById('view-switch').hidden = !several;
    if (!several) setMode('cards');
    else if (app.mode === null) setMode('wall');
  }

  function setMode(mode) {
    app.mode = mode;
    document.getElementById('wall').hidden = mode !== 'wall';
    document.getElementById('streams').hidden = mode === 'wall';
    setAttr(document.body, 'data-mode', mode);
    setAttr(document.getElementById('show-wall'), 'aria-pressed', mode === 'wall' ? 'true' : 'false');
    setAttr(document.getElementById('show-cards'), 'aria-pressed', mode === 'cards' ? 'true' : 'false');
  }

  function openCard(name) {
    setMode('cards');
    const card = app.cards.get(name);
    if (!card) return;
    card.root.scrollIntoView({ block: 'start' });
    card.root.classList.add('opened');
    setTimeout(() => card.root.classList.remove('opened'), 2000);
  }

  function updateSummary(now) {
    const view = app.view;
    const node = document.getElementById('session-summary');
    if (!node || !view) return;
    const parts = [];
    if (isNum(view.connected) && isNum(view.total)) {
      parts.push(view.connected + ' / ' + view.total + (view.total === 1 ? ' stream' : ' streams') + ' connected');
    }
    if (isNum(view.latency)) parts.push('latency ' + view.latency + ' ms');
    if (!app.closed) {
      const exp = parseTime(view.expires);
      if (isNum(exp)) parts.push('expires in ' + fmtCountdown(exp - now) + ' if idle');
      else if (view.expires === null) parts.push('no expiry while connected');
    }
    // several servers on one database: the one serving the session now
    if (typeof view.node === 'string') parts.push('served by ' + view.node);
    setText(node, parts.join(' · '));
  }

  async function refreshView() {
    const r = await api('GET', apiBase);
    if (r.ok) applyView(r.data);
    return r;
  }

  // ---- closing ---------------------------------------------------------------------------

  function markClosed(reason) {
    if (!app.closed) {
      app.closed = true;
      clearTimeout(app.reconnectTimer);
      clearTimeout(app.connect.timer);
      if (app.ws) {
        const ws = app.ws;
        app.ws = null;
        try {
          ws.close(1000);
        } catch (_) {
          /* already closing */
        }
      }
      app.wsLive = false;
      setLive('closed');
      for (const card of app.cards.values()) card.disable();
      const closeButton = document.getElementById('close-session');
      if (closeButton) closeButton.disabled = true;
      const stateNode = document.getElementById('session-state');
      if (stateNode) {
        setText(stateNode, 'CLOSED');
        setAttr(stateNode, 'data-state', 'CLOSED');
      }
      setAttr(document.body, 'data-state', 'CLOSED');
      updateSummary(Date.now());
    }
    const banner = document.getElementById('banner');
    // A reason given later (closed message after a CLOSED view) replaces the bare banner.
    if (reason || !banner || banner.dataset.kind !== 'closed') {
      showBanner(reason ? 'Session closed: ' + reason : 'Session closed', 'closed', 0);
    }
  }

  async function closeSession() {
    if (app.closed) return;
    const name = (app.view && app.view.session) || sessionId;
    const ok = window.confirm(
      'Close session "' + name + '"?\n\nEvery camera and decoder is disconnected and all links of this session stop working.',
    );
    if (!ok) return;
    const button = document.getElementById('close-session');
    if (button) button.disabled = true;
    const r = await api('DELETE', apiBase);
    if (r.ok) markClosed('closed by operator');
    else if (r.status !== 410) {
      if (button) button.disabled = false;
      showBanner('Could not close the session: ' + r.message, 'error', 10000);
    }
  }

  // ---- WebSocket -------------------------------------------------------------------------

  function openSocket() {
    if (app.closed || app.ws) return;
    const url =
      (location.protocol === 'https:' ? 'wss://' : 'ws://') +
      location.host +
      '/api/ws/' +
      encodeURIComponent(sessionId) +
      '?t=' +
      encodeURIComponent(token);
    let ws;
    try {
      ws = new WebSocket(url);
    } catch (_) {
      scheduleReconnect();
      return;
    }
    app.ws = ws;
    let gotMessage = false;
    ws.addEventListener('open', () => {
      if (app.ws !== ws) return;
      // Says this connection is a dashboard: the server then pushes a view on every change
      // (and closes connections that say nothing).
      ws.send(JSON.stringify({ type: 'watch' }));
      app.wsLive = true;
      setLive('live');
    });
    ws.addEventListener('message', (ev) => {
      if (app.ws !== ws) return;
      if (!gotMessage) {
        gotMessage = true;
        app.backoff = BACKOFF_MIN;
      }
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch (_) {
        return;
      }
      if (!msg || typeof msg !== 'object') return;
      if (msg.type === 'view') {
        applyView(msg);
      } else if (msg.type === 'closed') {
        markClosed(typeof msg.reason === 'string' ? msg.reason : '');
      } else if (msg.type === 'error') {
        const text = msg.message || msg.code || 'unknown error';
        showBanner('Server: ' + text, 'error', 15000);
      }
    });
    ws.addEventListener('close', () => {
      if (app.ws !== ws) return;
      app.ws = null;
      app.wsLive = false;
      if (app.closed) setLive('closed');
      else scheduleReconnect();
    });
  }

  function scheduleReconnect() {
    if (app.closed) return;
    const delay = app.backoff;
    app.backoff = Math.min(app.backoff * 2, BACKOFF_MAX);
    setLive('reconnecting', 'Reconnecting in ' + Math.round(delay / 1000) + ' s…');
    clearTimeout(app.reconnectTimer);
    app.reconnectTimer = setTimeout(async () => {
      if (app.closed) return;
      setLive('reconnecting');
      // Ask over HTTP first: a refused upgrade says nothing to the browser, an HTTP answer
      // tells an ended session (410, handled in api()) or a bad token apart from an outage.
      const r = await refreshView();
      if (app.closed) return;
      if (r.status === 401 || r.status === 403 || r.status === 404) {
        showBanner('Cannot follow this session: ' + r.message, 'error', 0);
        setLive('offline');
        return;
      }
      openSocket();
    }, delay);
  }

  // ---- start -----------------------------------------------------------------------------

  function start() {
    document.getElementById('show-wall').addEventListener('click', () => setMode('wall'));
    document.getElementById('show-cards').addEventListener('click', () => setMode('cards'));
    const closeButton = document.getElementById('close-session');
    if (closeButton) closeButton.addEventListener('click', closeSession);

    // Escape shrinks an enlarged QR code.
    document.addEventListener('keydown', (e) => {
      if (e.key !== 'Escape') return;
      for (const fig of document.querySelectorAll('figure.qr-figure.enlarged')) {
        fig.classList.remove('enlarged');
        const b = fig.querySelector('button.qr-zoom');
        if (b) b.setAttribute('aria-expanded', 'false');
      }
    });

    if (!token || !sessionId) {
      showBanner('This link has no session token (?t=…). Open the full dashboard link from punch session create.', 'error', 0);
      setLive('offline');
      if (closeButton) closeButton.disabled = true;
      return;
    }

    const initial = readInitialView();
    if (initial) applyView(initial);
    else refreshView();

    setInterval(() => {
      const now = Date.now();
      for (const card of app.cards.values()) card.tick(now);
      updateSummary(now);
    }, 1000);

    if (!app.closed) openSocket();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
