// Punch: the page that creates a session (GET /). It sends POST /api/session, with the
// server's create key when one is needed, and opens the new session's dashboard.
'use strict';

(function () {
  const form = document.getElementById('create-form');
  const message = document.getElementById('create-message');
  const submit = document.getElementById('create-submit');
  const keyField = document.getElementById('create-key-field');
  const keyInput = document.getElementById('create-key');

  function say(text) {
    message.textContent = text;
    message.hidden = !text;
  }

  // Whole numbers only; empty means "the server's default".
  function number(id, what) {
    const raw = document.getElementById(id).value.trim();
    if (raw === '') return null;
    if (!/^\d+$/.test(raw)) throw new Error(`${what} must be a whole number`);
    return Number(raw);
  }

  function request() {
    const body = {};
    const name = document.getElementById('create-name').value.trim();
    if (name) body.name = name;
    const streams = document
      .getElementById('create-streams')
      .value.split(',')
      .map((s) => s.trim())
      .filter((s) => s);
    if (streams.length) body.streams = streams;
    const latency = number('create-latency', 'Latency');
    if (latency !== null) body.latency = latency;
    const ttl = number('create-ttl', 'Idle expiry');
    if (ttl !== null) body.ttl = ttl;
    return body;
  }

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    let body;
    try {
      body = request();
    } catch (e) {
      say(e.message);
      return;
    }
    const headers = { 'Content-Type': 'application/json' };
    const key = keyInput.value.trim();
    if (key) headers.Authorization = `Bearer ${key}`;
    submit.disabled = true;
    say('');
    try {
      const res = await fetch('/api/session', { method: 'POST', headers, body: JSON.stringify(body) });
      const answer = await res.json().catch(() => null);
      if (res.status === 201 && answer && answer.url) {
        // the dashboard of the new session, same origin (its link carries the admin token)
        const url = new URL(answer.url, window.location.href);
        window.location.assign(url.pathname + url.search);
        return;
      }
      const text = answer && answer.error ? answer.error.message : `the server answered HTTP ${res.status}`;
      if (res.status === 401) {
        say(`The create key is missing or wrong: ask this server's operator for it. (${text})`);
        keyField.hidden = false;
        keyInput.focus();
      } else {
        say(text);
      }
    } catch (e) {
      say(`The server could not be reached: ${e.message}`);
    } finally {
      submit.disabled = false;
    }
  });
})();
