'use strict';
// The Gonets call demo: publish the camera and microphone into a channel's
// live stream with WHIP (RFC 9725) and play a channel's stream with WHEP,
// against the node that served this page. Plain browser APIs, no build.
//
// Each session posts its SDP offer before applying it, so that the ICE
// servers the node names in the answer's Link headers (RFC 9725 section
// 4.6) are set before the browser gathers; its candidates then go to the
// node by trickle ICE (PATCH of an SDP fragment, RFC 8840). A session ends
// with a DELETE of its URL.
//
// The outputs (#pub-state, #pub-frames, #play-frames...) are what a person
// reads and what the node's browser test asserts on.

const $ = (id) => document.getElementById(id);

// statsEvery is how often the stats outputs are refreshed, in ms.
const statsEvery = 500;

// A Session is one WHIP or WHEP session: its PeerConnection, its URL and
// what its stats go to.
class Session {
  constructor(kind, out) {
    this.kind = kind; // 'whip' or 'whep'
    this.out = out; // the prefix of its outputs: 'pub' or 'play'
    this.pc = null;
    this.url = null; // the session's URL, from Location
    this.token = '';
    this.etag = '';
    this.patches = Promise.resolve(); // trickle PATCHes, one at a time, in order
    this.timer = 0;
    this.stream = null; // the local media of a publish
  }

  state(s) {
    $(this.out + '-state').textContent = s;
  }

  // start posts the offer of pc, the Session's PeerConnection with its
  // transceivers added, and applies the node's answer.
  async start(pc) {
    const {token, channel} = fields();
    this.pc = pc;
    this.token = token;
    this.state('connecting');
    pc.addEventListener('connectionstatechange', () => {
      if (this.pc !== pc) return;
      const s = pc.connectionState;
      this.state(s === 'connected' ? 'live' : s);
    });
    const offer = await pc.createOffer();
    const url = new URL('/' + this.kind + '/' + channel, location.href);
    const resp = await fetch(url, {
      method: 'POST',
      headers: {'Content-Type': 'application/sdp', 'Authorization': 'Bearer ' + token},
      body: offer.sdp,
    });
    if (resp.status !== 201) {
      throw await refusal(resp);
    }
    const answer = await resp.text();
    this.url = new URL(resp.headers.get('Location'), url);
    this.etag = resp.headers.get('ETag') || '';
    const servers = iceServers(resp.headers.get('Link'));
    if (servers.length > 0) {
      pc.setConfiguration({...pc.getConfiguration(), iceServers: servers});
    }
    const ufrag = /^a=ice-ufrag:(.*)$/m.exec(offer.sdp)?.[1].trim() ?? '';
    const pwd = /^a=ice-pwd:(.*)$/m.exec(offer.sdp)?.[1].trim() ?? '';
    pc.addEventListener('icecandidate', (e) => {
      if (e.candidate && e.candidate.candidate) {
        this.trickle(ufrag, pwd, e.candidate);
      }
    });
    await pc.setLocalDescription(offer);
    await pc.setRemoteDescription({type: 'answer', sdp: answer});
    this.timer = setInterval(() => this.stats(), statsEvery);
  }

  // trickle sends one candidate to the node, after the ones before it.
  trickle(ufrag, pwd, c) {
    const frag = 'a=ice-ufrag:' + ufrag + '\r\na=ice-pwd:' + pwd + '\r\n' +
      'm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:' + c.sdpMid + '\r\na=' + c.candidate + '\r\n';
    const url = this.url;
    this.patches = this.patches.then(async () => {
      if (this.url !== url) return; // stopped meanwhile
      const resp = await fetch(url, {
        method: 'PATCH',
        headers: {'Content-Type': 'application/trickle-ice-sdpfrag', 'Authorization': 'Bearer ' + this.token,
          'If-Match': this.etag || '*'},
        body: frag,
      });
      if (resp.status !== 204 && this.url === url) {
        const err = await refusal(resp);
        console.warn('trickle refused', err.message);
      }
    }).catch((err) => console.warn('trickle failed', err));
  }

  // stop ends the session: a DELETE of its URL, then the PeerConnection
  // and the local media closed. The DELETE goes first: a PeerConnection
  // closed first could end the session on the node before it arrives.
  async stop() {
    clearInterval(this.timer);
    const url = this.url;
    const pc = this.pc;
    this.url = null;
    this.pc = null;
    const close = () => {
      if (this.stream) {
        this.stream.getTracks().forEach((t) => t.stop());
        this.stream = null;
      }
      if (pc) pc.close();
    };
    if (!url) {
      close();
      this.state('stopped');
      return;
    }
    let resp;
    try {
      resp = await fetch(url, {method: 'DELETE', headers: {'Authorization': 'Bearer ' + this.token}});
    } finally {
      close();
    }
    if (resp.status === 404) {
      this.state('ended by the node'); // its stream ended, or it went silent
      return;
    }
    if (resp.status !== 200) {
      throw await refusal(resp);
    }
    this.state('stopped');
  }

  // stats refreshes the Session's outputs from its PeerConnection's stats.
  async stats() {
    const pc = this.pc;
    if (!pc) return;
    const report = await pc.getStats();
    let frames = 0, audio = 0, size = '-';
    report.forEach((s) => {
      if (this.kind === 'whip' && s.type === 'outbound-rtp') {
        if (s.kind === 'video') {
          frames += s.framesSent || 0;
          if (s.frameWidth) size = s.frameWidth + 'x' + s.frameHeight;
        } else if (s.kind === 'audio') {
          audio += s.packetsSent || 0;
        }
      }
      if (this.kind === 'whep' && s.type === 'inbound-rtp') {
        if (s.kind === 'video') {
          frames += s.framesDecoded || 0;
          if (s.frameWidth) size = s.frameWidth + 'x' + s.frameHeight;
        } else if (s.kind === 'audio') {
          audio += s.packetsReceived || 0;
        }
      }
    });
    if (this.pc !== pc) return;
    $(this.out + '-frames').textContent = String(frames);
    $(this.out + '-audio').textContent = String(audio);
    $(this.out + '-size').textContent = size;
  }
}

// refusal returns the error of a response that is not the one asked for:
// the node's stable code and message when it sent them.
async function refusal(resp) {
  let code = 'http_' + resp.status;
  let message = resp.statusText;
  try {
    const e = await resp.json();
    code = e.code || code;
    message = e.message || message;
  } catch (_) {
    // not the node's JSON: the status says it
  }
  const err = new Error(code + ': ' + message);
  err.code = code;
  return err;
}

// iceServers parses the Link header's rel="ice-server" links (RFC 9725
// section 4.6) into RTCIceServers.
function iceServers(header) {
  const servers = [];
  for (const link of splitOutsideQuotes(header || '', ',')) {
    const m = /^\s*<([^>]*)>(.*)$/s.exec(link);
    if (!m) continue;
    const params = {};
    for (const p of splitOutsideQuotes(m[2], ';')) {
      const kv = /^\s*([A-Za-z-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s";]*))\s*$/s.exec(p);
      if (kv) params[kv[1].toLowerCase()] = kv[2] !== undefined ? kv[2].replace(/\\(.)/gs, '$1') : kv[3];
    }
    if (params.rel !== 'ice-server') continue;
    const server = {urls: m[1]};
    if (params.username !== undefined) {
      server.username = params.username;
      server.credential = params.credential;
    }
    servers.push(server);
  }
  return servers;
}

// splitOutsideQuotes splits s at each sep that is outside an HTTP
// quoted-string (where a backslash escapes the next character).
function splitOutsideQuotes(s, sep) {
  const parts = [];
  let quoted = false;
  let from = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (quoted && c === '\\') {
      i++;
    } else if (c === '"') {
      quoted = !quoted;
    } else if (!quoted && c === sep) {
      parts.push(s.slice(from, i));
      from = i + 1;
    }
  }
  parts.push(s.slice(from));
  return parts;
}

// fields returns the form's token and channel, or throws what is wrong.
function fields() {
  const token = $('token').value.trim();
  const channel = $('channel').value.trim();
  if (token === '') throw new Error('no token: mint one with gonets token --user U --device D');
  if (!/^[1-9][0-9]*$/.test(channel)) throw new Error('the channel is a channel\'s chat id, a number');
  return {token, channel};
}

const pub = new Session('whip', 'pub');
const play = new Session('whep', 'play');

// publish sends the camera and the microphone: getUserMedia, then WHIP.
async function publish() {
  const stream = await navigator.mediaDevices.getUserMedia({audio: true, video: {width: 640, height: 480}});
  pub.stream = stream;
  $('local').srcObject = stream;
  const pc = new RTCPeerConnection({bundlePolicy: 'max-bundle'});
  for (const track of stream.getTracks()) {
    pc.addTransceiver(track, {direction: 'sendonly', streams: [stream]});
  }
  await pub.start(pc);
}

// startPlay plays the channel's stream: WHEP with one recvonly audio and
// one recvonly video section.
async function startPlay() {
  const pc = new RTCPeerConnection({bundlePolicy: 'max-bundle'});
  pc.addTransceiver('audio', {direction: 'recvonly'});
  pc.addTransceiver('video', {direction: 'recvonly'});
  const remote = new MediaStream();
  $('remote').srcObject = remote;
  pc.addEventListener('track', (e) => remote.addTrack(e.track));
  await play.start(pc);
}

// wire makes a start button and a stop button drive a Session: each
// failure shows as the state "error: code: message".
function wire(session, startID, stopID, startFn) {
  const startBtn = $(startID);
  const stopBtn = $(stopID);
  const fail = async (err) => {
    try {
      await session.stop();
    } catch (_) {
      // the session is gone already; the first error is the one to show
    }
    session.state('error: ' + err.message);
    startBtn.disabled = false;
    stopBtn.disabled = true;
  };
  startBtn.addEventListener('click', async () => {
    startBtn.disabled = true;
    stopBtn.disabled = false;
    try {
      await startFn();
    } catch (err) {
      await fail(err);
    }
  });
  stopBtn.addEventListener('click', async () => {
    stopBtn.disabled = true;
    try {
      await session.stop();
      startBtn.disabled = false;
    } catch (err) {
      await fail(err);
    }
  });
}

// prefill takes the token and the channel from the URL's fragment
// (#token=...&channel=...), which never reaches the server, and then drops
// the fragment from the address bar and the history.
function prefill() {
  const p = new URLSearchParams(location.hash.slice(1));
  if (p.has('token')) $('token').value = p.get('token');
  if (p.has('channel')) $('channel').value = p.get('channel');
  if (location.hash) history.replaceState(null, '', location.pathname + location.search);
}

wire(pub, 'publish', 'unpublish', publish);
wire(play, 'play', 'unplay', startPlay);
prefill();
