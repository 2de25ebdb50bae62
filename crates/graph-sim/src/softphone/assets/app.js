// graph-sim softphone: join a simulated call as a participant with microphone and speaker.
// Signaling: POST an offer (with all candidates), get the answer; roster pushed by SSE.
'use strict';

const $ = (id) => document.getElementById(id);
const ui = {
  calls: $('calls'), name: $('name'), join: $('join'), create: $('create'), error: $('error'),
  setup: $('setup'), incall: $('incall'), callid: $('callid'), roster: $('roster'),
  mute: $('mute'), hangup: $('hangup'), status: $('status'), speaker: $('speaker'),
  sendbar: $('sendbar'), hearbar: $('hearbar'), senddb: $('senddb'), heardb: $('heardb'),
};

// Everything about the current session; `window.softphone` exposes it to tests.
const session = {
  callId: null, sourceId: null, pc: null, mic: null, events: null, muted: false,
  audio: null, sendAnalyser: null, hearAnalyser: null, roster: [], connection: 'new',
};
let selected = null;
let canCreate = false;

function showError(text) { ui.error.textContent = text || ''; }

function setStatus(text, live) {
  ui.status.textContent = text;
  ui.status.classList.toggle('live', !!live);
}

async function api(method, path, body) {
  const res = await fetch('api/' + path, {
    method,
    headers: body ? { 'content-type': 'application/json' } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  if (res.status === 204) return null;
  const data = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(data.error || ('HTTP ' + res.status));
  return data;
}

function renderCalls(calls) {
  ui.calls.replaceChildren();
  if (!calls.length) {
    const li = document.createElement('li');
    li.className = 'empty';
    li.textContent = 'no active calls yet';
    ui.calls.append(li);
  }
  if (selected && !calls.some((c) => c.id === selected)) selected = null;
  if (!selected) {
    const first = calls.find((c) => c.state === 'established' && c.appHostedMedia);
    selected = first ? first.id : null;
  }
  for (const c of calls) {
    const li = document.createElement('li');
    li.dataset.callId = c.id;
    li.classList.toggle('selected', c.id === selected);
    const code = document.createElement('code');
    code.textContent = c.id.slice(0, 8);
    li.append(code, ` ${c.kind}, ${c.state}, ${c.participants} in call` + (c.appHostedMedia ? '' : ' (no app-hosted media)'));
    li.onclick = () => { selected = c.id; renderCalls(calls); };
    ui.calls.append(li);
  }
  ui.join.disabled = !!session.pc || !selected;
  ui.create.disabled = !!session.pc || !canCreate;
}

async function refreshCalls() {
  if (session.pc) return;
  try {
    const data = await api('GET', 'calls');
    canCreate = data.canCreate;
    renderCalls(data.calls);
  } catch (e) {
    showError('cannot list calls: ' + e.message);
  }
}

function dbfs(analyser, buf) {
  analyser.getFloatTimeDomainData(buf);
  let sum = 0;
  for (const v of buf) sum += v * v;
  const rms = Math.sqrt(sum / buf.length);
  return rms > 0 ? Math.max(-96, 20 * Math.log10(rms)) : -96;
}

function meter(bar, label, db) {
  bar.style.width = Math.max(0, Math.min(100, (db + 60) / 60 * 100)) + '%';
  label.textContent = db <= -95 ? '–' : db.toFixed(0) + ' dB';
}

function startMeters() {
  const buf = new Float32Array(2048);
  session.meterTimer = setInterval(() => {
    if (session.sendAnalyser) meter(ui.sendbar, ui.senddb, session.muted ? -96 : dbfs(session.sendAnalyser, buf));
    if (session.hearAnalyser) meter(ui.hearbar, ui.heardb, dbfs(session.hearAnalyser, buf));
  }, 100);
}

function renderRoster(call) {
  session.roster = call ? call.roster : [];
  ui.roster.replaceChildren();
  for (const p of session.roster) {
    const tr = document.createElement('tr');
    tr.dataset.sourceId = p.sourceId;
    const dot = document.createElement('span');
    dot.className = 'dot' + (p.speaking ? ' speaking' : '');
    dot.title = p.speaking ? 'speaking' : 'silent';
    const name = document.createElement('td');
    name.className = 'name';
    name.textContent = p.name;
    const level = document.createElement('div');
    level.className = 'bar';
    const fill = document.createElement('div');
    fill.style.width = Math.max(0, Math.min(100, (p.levelDbfs + 60) / 60 * 100)) + '%';
    level.append(fill);
    const state = document.createElement('td');
    const badge = (text, cls) => {
      const b = document.createElement('span');
      b.className = 'badge ' + (cls || '');
      b.textContent = text;
      state.append(b);
    };
    if (p.bot) badge('bot');
    if (p.sourceId === session.sourceId) badge('you', 'you');
    else if (p.person) badge('browser');
    if (p.muted) badge('muted', 'muted');
    if (p.inLobby) badge('lobby');
    const cells = [dot, name, String(p.sourceId), level, state].map((c) => {
      if (c instanceof HTMLTableCellElement) return c;
      const td = document.createElement('td');
      td.append(c);
      return td;
    });
    tr.append(...cells);
    ui.roster.append(tr);
  }
}

function follow(callId) {
  if (session.events) session.events.close();
  const es = new EventSource('api/events?call=' + encodeURIComponent(callId));
  es.addEventListener('state', (ev) => {
    let data;
    try { data = JSON.parse(ev.data); } catch { return; }
    renderRoster(data.call);
    if (!data.call && session.pc) {
      setStatus('the call ended');
      leave(false);
    }
  });
  session.events = es;
}

function gathered(pc, ms) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { clearTimeout(t); resolve(); };
    const t = setTimeout(done, ms);
    pc.addEventListener('icegatheringstatechange', () => {
      if (pc.iceGatheringState === 'complete') done();
    });
  });
}

async function start(mode) {
  showError('');
  const name = ui.name.value.trim() || 'Browser user';
  ui.join.disabled = ui.create.disabled = true;
  try {
    const audioCtx = new AudioContext();
    await audioCtx.resume();
    session.audio = audioCtx;
    session.mic = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false },
    });
    session.sendAnalyser = audioCtx.createAnalyser();
    session.sendAnalyser.fftSize = 2048;
    audioCtx.createMediaStreamSource(session.mic).connect(session.sendAnalyser);

    const pc = new RTCPeerConnection({ iceServers: [] });
    session.pc = pc;
    for (const track of session.mic.getAudioTracks()) pc.addTrack(track, session.mic);
    pc.ontrack = (ev) => {
      const remote = ev.streams[0] || new MediaStream([ev.track]);
      // Chromium feeds WebAudio from a remote stream only while a media element plays it.
      ui.speaker.srcObject = remote;
      ui.speaker.play().catch(() => {});
      session.hearAnalyser = audioCtx.createAnalyser();
      session.hearAnalyser.fftSize = 4096;
      session.hearAnalyser.smoothingTimeConstant = 0.2;
      audioCtx.createMediaStreamSource(remote).connect(session.hearAnalyser);
    };
    pc.onconnectionstatechange = () => {
      session.connection = pc.connectionState;
      if (pc.connectionState === 'connected') setStatus('in call, media connected', true);
      if (pc.connectionState === 'failed') setStatus('media failed');
    };
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc, 3000);
    const body = { name, sdp: pc.localDescription.sdp };
    const reply = mode === 'join'
      ? await api('POST', 'calls/' + encodeURIComponent(selected) + '/people', body)
      : await api('POST', 'calls', body);
    session.callId = reply.callId;
    session.sourceId = reply.sourceId;
    await pc.setRemoteDescription({ type: 'answer', sdp: reply.sdp });
    ui.callid.textContent = reply.callId;
    ui.setup.hidden = true;
    ui.incall.hidden = false;
    setStatus(mode === 'join' ? 'joining…' : 'calling the bot…');
    follow(reply.callId);
    startMeters();
  } catch (e) {
    showError(e.message || String(e));
    await leave(false);
  }
}

async function leave(tellSim) {
  const { callId, sourceId } = session;
  if (tellSim && callId !== null && sourceId !== null) {
    await api('DELETE', `calls/${encodeURIComponent(callId)}/people/${sourceId}`).catch(() => {});
  }
  if (session.events) session.events.close();
  if (session.pc) session.pc.close();
  if (session.mic) session.mic.getTracks().forEach((t) => t.stop());
  if (session.audio) session.audio.close().catch(() => {});
  clearInterval(session.meterTimer);
  Object.assign(session, {
    callId: null, sourceId: null, pc: null, mic: null, events: null, muted: false,
    audio: null, sendAnalyser: null, hearAnalyser: null, roster: [], connection: 'new',
  });
  ui.mute.textContent = 'Mute';
  ui.mute.classList.remove('on');
  ui.incall.hidden = true;
  ui.setup.hidden = false;
  if (tellSim) setStatus('not in a call');
  refreshCalls();
}

async function toggleMute() {
  if (!session.pc) return;
  const muted = !session.muted;
  session.mic.getAudioTracks().forEach((t) => { t.enabled = !muted; });
  session.muted = muted;
  ui.mute.textContent = muted ? 'Unmute' : 'Mute';
  ui.mute.classList.toggle('on', muted);
  try {
    await api('POST', `calls/${encodeURIComponent(session.callId)}/people/${session.sourceId}/mute`, { muted });
  } catch (e) {
    showError('mute: ' + e.message);
  }
}

ui.join.onclick = () => start('join');
ui.create.onclick = () => start('create');
ui.hangup.onclick = () => leave(true);
ui.mute.onclick = toggleMute;
setInterval(refreshCalls, 1000);
refreshCalls();

// For tests and curious people: the session, inbound RTP figures, and the spectrum heard.
window.softphone = {
  session,
  selectCall(id) { selected = id; refreshCalls(); },
  async inbound() {
    if (!session.pc) return null;
    const stats = await session.pc.getStats();
    let found = null;
    stats.forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'audio') found = { packetsReceived: s.packetsReceived, bytesReceived: s.bytesReceived };
    });
    return found;
  },
  // Level (dB) of the bin nearest `hz` in what is heard, and the median of 150..4000 Hz.
  heard(hz) {
    const a = session.hearAnalyser;
    if (!a) return null;
    const bins = new Float32Array(a.frequencyBinCount);
    a.getFloatFrequencyData(bins);
    const binHz = session.audio.sampleRate / a.fftSize;
    const at = (f) => Math.round(f / binHz);
    let peak = -Infinity;
    for (let i = at(hz) - 2; i <= at(hz) + 2; i++) peak = Math.max(peak, bins[i]);
    const band = Array.from(bins.slice(at(150), at(4000))).sort((x, y) => x - y);
    return { level: peak, median: band[band.length >> 1] };
  },
};
