// The txpubsub web console: plain JavaScript, no build step, nothing from
// elsewhere. It speaks the JSON WebSocket at /ws (docs/websocket.md).
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws";
  const MAX_SHOWN = 500;          // messages kept on the page
  const POLL_MS = 3000;           // channel list and who's online

  let socket = null;
  let info = null;                 // the server's greeting
  let epoch = null;                // of the first connection: resume needs it
  let myName = localStorage.getItem("txpubsub.name") || "";
  let login = null;                // {user, password} once logged in: again on reconnect, never stored
  let loggedIn = null;             // resolves once this connection is logged in
  let nextRef = 1;
  const pending = new Map();       // ref -> callback(reply)
  const patterns = [];             // subscribed patterns, in order
  const lastIds = new Map();       // channel -> last message id seen
  let retryMs = 500;
  let pollTimer = null;
  let everConnected = false;
  const samples = [];              // [time, msgs_in] from $sys.stats

  // -- the connection -------------------------------------------------------

  function connect() {
    setStatus("connecting", everConnected ? "reconnecting…" : "connecting…");
    const thisSocket = socket = new WebSocket(url, "txpubsub.json");
    socket.onmessage = (event) => onFrame(JSON.parse(event.data));
    socket.onclose = (event) => {
      socket = null;
      clearInterval(pollTimer);
      for (const callback of pending.values()) callback({ type: "err", code: "closed", text: "connection lost" });
      pending.clear();
      const why = event.reason ? " (" + event.reason + ")" : "";
      setStatus("down", "disconnected" + why + ", retrying in " + Math.round(retryMs / 1000 + 0.4) + " s");
      // Once per outage, not once per failed retry.
      if (thisSocket.greeted) note("connection lost" + why);
      setTimeout(connect, retryMs);
      retryMs = Math.min(retryMs * 2, 15000);
    };
  }

  function request(op, fields) {
    return new Promise((resolve) => {
      if (!socket || socket.readyState !== WebSocket.OPEN) {
        resolve({ type: "err", code: "closed", text: "not connected" });
        return;
      }
      const ref = nextRef++;
      pending.set(ref, resolve);
      socket.send(JSON.stringify(Object.assign({ op: op, ref: ref }, fields || {})));
    });
  }

  function onFrame(obj) {
    if (obj.type === "info") return onInfo(obj);
    if (obj.type === "msg") return onMessage(obj, false);
    if (obj.type === "drop") return note("channel " + obj.channel + " was dropped by the admin");
    if ("ref" in obj && pending.has(obj.ref)) {
      const callback = pending.get(obj.ref);
      pending.delete(obj.ref);
      callback(obj);
    }
  }

  async function onInfo(greeting) {
    info = greeting;
    socket.greeted = true;
    const resumed = everConnected;
    everConnected = true;
    retryMs = 500;
    const sameEpoch = epoch === null || epoch === info.epoch;
    if (epoch === null) epoch = info.epoch;
    setStatus("up", resumed ? "connected again" : "connected");
    if (resumed) note("back online" + (sameEpoch ? "" : " (the server restarted without its history)"));
    if (info.auth_required) {
      // A server with --users: nothing but auth until logged in (docs/auth.md).
      if (login && (await request("auth", login)).type !== "ok") login = null;
      if (!login) {
        $("login-form").hidden = false;
        setStatus("up", "log in");
        await new Promise((resolve) => { loggedIn = resolve; });
      }
    }
    if (myName) await setName(myName, true);
    showMe();
    // A new epoch numbers every channel from 1 again: the ids seen before only
    // tell since= where to start (with the old epoch, it replays all kept).
    const seen = new Map(lastIds);
    if (!sameEpoch) lastIds.clear();
    for (const pattern of patterns) await subscribe(pattern, true, false, seen);
    epoch = info.epoch;
    if (!patterns.includes("$sys.stats")) await subscribeStats();
    refresh();
    pollTimer = setInterval(refresh, POLL_MS);
  }

  // -- names and subscriptions ----------------------------------------------

  async function setName(name, quiet) {
    const reply = await request("name", { name: name });
    if (reply.type === "ok") {
      myName = reply.name;
      localStorage.setItem("txpubsub.name", myName);
      if (!quiet) note("you are " + myName);
      showError("");
      refreshSoon();
    } else {
      showError(reply.text);
    }
    showMe();
  }

  function isConcrete(pattern) {
    return !pattern.split(".").some((token) => token === "*" || token === ">");
  }

  function matches(pattern, channel) {
    const p = pattern.split("."), c = channel.split(".");
    for (let i = 0; i < p.length; i++) {
      if (p[i] === ">") return i < c.length;
      if (i >= c.length || (p[i] !== "*" && p[i] !== c[i])) return false;
    }
    return p.length === c.length;
  }

  // Subscribe; on a reconnect, replay what was missed: since= for a channel,
  // and the kept history after the last seen id for channels under a pattern.
  async function subscribe(pattern, resuming, hidden, seen) {
    const fields = { pattern: pattern };
    const last = (seen || lastIds).get(pattern);
    if (resuming && isConcrete(pattern) && last !== undefined) {
      fields.since = last;
      fields.epoch = epoch;
    }
    const reply = await request("sub", fields);
    if (reply.type !== "ok") {
      if (!resuming) showError(reply.text);
      return;
    }
    if (!patterns.includes(pattern)) {
      patterns.push(pattern);
      showSubs();
    }
    if (resuming && reply.replayed) note("caught up " + reply.replayed + " missed message(s) on " + pattern);
    if (resuming && reply.partial) note("some messages on " + pattern + " are no longer kept");
    if (resuming && !isConcrete(pattern)) {
      for (const [channel, id] of lastIds) {
        if (!matches(pattern, channel) || channel.startsWith("@")) continue;
        const history = await request("history", { channel: channel });
        if (history.type !== "ok") continue;
        for (const m of history.messages) if (m.id > (lastIds.get(channel) || 0)) onMessage(m, true);
      }
    }
    if (!resuming && !hidden) note("subscribed to " + pattern);
    refreshSoon();
  }

  // The server's numbers: the last one kept right away, then every 10 s.
  async function subscribeStats() {
    let reply = await request("sub", { pattern: "$sys.stats", last: 1 });
    if (reply.type !== "ok") reply = await request("sub", { pattern: "$sys.stats" });
    if (reply.type === "ok") patterns.push("$sys.stats");
  }

  // Soon after something changed, show the lists as they are now.
  let soon = null;
  function refreshSoon() {
    if (soon === null) soon = setTimeout(() => { soon = null; refresh(); }, 250);
  }

  async function unsubscribe(pattern) {
    const reply = await request("unsub", { pattern: pattern });
    if (reply.type === "ok" || reply.code === "not-subscribed") {
      patterns.splice(patterns.indexOf(pattern), 1);
      showSubs();
      refreshSoon();
    } else {
      showError(reply.text);
    }
  }

  // -- messages -------------------------------------------------------------

  function payloadText(m) {
    if (m.data !== undefined) return m.data;
    return "[" + atob(m.data_b64).length + " bytes, base64] " + m.data_b64;
  }

  function onMessage(m, replayed) {
    const seen = lastIds.get(m.channel);
    if (seen !== undefined && m.id <= seen && !m.channel.startsWith("@")) return; // already shown
    lastIds.set(m.channel, m.id);
    if (m.channel === "$sys.stats") return showStats(m);
    const li = document.createElement("li");
    const dm = m.channel.startsWith("@");
    if (dm) li.className = "dm";
    if (info && (m.sender === myName || m.sender === info.client_id)) li.classList.add("mine");
    li.title = "#" + m.id + (replayed ? " (replayed)" : "");
    refreshSoon();
    li.append(span("ch", dm ? (m.channel === "@" + (myName || info.client_id) ? "to you" : m.channel) : m.channel),
              span("from", m.sender), span("data", payloadText(m)));
    show(li);
  }

  function note(text) {
    const li = document.createElement("li");
    li.className = "note";
    li.textContent = new Date().toLocaleTimeString() + " — " + text;
    show(li);
  }

  function show(li) {
    const list = $("messages");
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    list.append(li);
    while (list.children.length > MAX_SHOWN) list.firstChild.remove();
    if (atBottom) list.scrollTop = list.scrollHeight;
    else $("jump").hidden = false;
  }

  function span(cls, text) {
    const s = document.createElement("span");
    s.className = cls;
    s.textContent = text;
    return s;
  }

  async function publish(channel, text) {
    const reply = await request("pub", { channel: channel, data: text });
    if (reply.type !== "ok") {
      showError(reply.text);
      return false;
    }
    showError("");
    refreshSoon();
    if (channel.startsWith("@") && channel !== "@" + myName && channel !== "@" + info.client_id) {
      // Your own copy of a direct message you sent.
      onMessage({ channel: channel, id: -reply.id, sender: myName || info.client_id, data: text }, false);
      lastIds.delete(channel);
    }
    return true;
  }

  // -- the side panels ------------------------------------------------------

  async function refresh() {
    const [who, list] = await Promise.all([request("who"), request("list", { pattern: ">" })]);
    if (who.type === "ok") showWho(who.clients);
    if (list.type === "ok") showChannels(list.channels);
  }

  function showWho(clients) {
    const ul = $("who");
    ul.replaceChildren();
    $("who-count").textContent = clients.length;
    for (const c of clients) {
      const li = document.createElement("li");
      const b = document.createElement("button");
      const who = c.name || c.id;
      b.textContent = who + (info && c.id === info.client_id ? " (you)" : "");
      b.title = "send " + who + " a direct message";
      b.onclick = () => { $("channel").value = "@" + who; $("text").focus(); };
      li.append(b, span("id", c.id + " · " + duration(c.connected_s)));
      ul.append(li);
    }
  }

  function showChannels(channels) {
    const body = $("channels");
    body.replaceChildren();
    $("channel-count").textContent = channels.length;
    for (const ch of channels) {
      const tr = document.createElement("tr");
      for (const value of [ch.name, ch.subscribers, ch.published, ch.kept]) {
        const td = document.createElement("td");
        td.textContent = value;
        tr.append(td);
      }
      tr.title = "publish to " + ch.name;
      tr.onclick = () => { $("channel").value = ch.name; $("pattern").value = ch.name; };
      body.append(tr);
    }
  }

  function showStats(m) {
    let stats;
    try { stats = JSON.parse(m.data); } catch (e) { return; }
    const body = $("stats");
    body.replaceChildren();
    const labels = { clients: "clients", channels: "channels", subscriptions: "subscriptions",
                     msgs_in: "messages in", msgs_out: "messages out",
                     slow_consumers: "slow consumers", uptime_s: "up for" };
    for (const key of Object.keys(labels)) {
      if (!(key in stats)) continue;
      const tr = document.createElement("tr");
      const k = document.createElement("td"), v = document.createElement("td");
      k.textContent = labels[key];
      v.textContent = key === "uptime_s" ? duration(stats[key]) : Number(stats[key]).toLocaleString();
      tr.append(k, v);
      body.append(tr);
    }
    samples.push([Date.now() / 1000, stats.msgs_in]);
    if (samples.length > 31) samples.shift();
    drawSpark();
  }

  function drawSpark() {
    const svg = $("spark");
    svg.replaceChildren();
    const rates = [];
    for (let i = 1; i < samples.length; i++) {
      const dt = samples[i][0] - samples[i - 1][0];
      rates.push(dt > 0 ? Math.max(0, samples[i][1] - samples[i - 1][1]) / dt : 0);
    }
    const title = document.createElementNS("http://www.w3.org/2000/svg", "title");
    const latest = rates.length ? rates[rates.length - 1] : 0;
    title.textContent = "messages in per second: " + latest.toFixed(1);
    svg.append(title);
    if (rates.length === 0) return;
    if (rates.length === 1) rates.unshift(rates[0]);
    const top = Math.max(1, ...rates);
    const points = rates.map((r, i) => (i * 200 / (rates.length - 1)).toFixed(1) + "," + (38 - r * 36 / top).toFixed(1));
    const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
    line.setAttribute("points", points.join(" "));
    svg.append(line);
  }

  function showSubs() {
    const box = $("subs");
    box.replaceChildren();
    for (const pattern of patterns) {
      if (pattern === "$sys.stats") continue;
      const chip = span("chip", pattern);
      const x = document.createElement("button");
      x.type = "button";
      x.textContent = "×";
      x.title = "unsubscribe from " + pattern;
      x.onclick = () => unsubscribe(pattern);
      chip.append(x);
      box.append(chip);
    }
  }

  function showMe() {
    $("me").textContent = info ? (myName ? myName + " · " : "") + info.client_id : "";
    if (myName && !$("name").value) $("name").value = myName;
  }

  function setStatus(kind, text) {
    const s = $("status");
    s.className = "status " + kind;
    s.textContent = text;
    for (const b of document.querySelectorAll("form button")) b.disabled = kind !== "up";
  }

  function showError(text) { $("error").textContent = text; }

  function duration(s) {
    if (s < 60) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + " min";
    return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
  }

  // -- the forms --------------------------------------------------------------

  $("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const tried = { user: $("user").value.trim(), password: $("password").value };
    const reply = await request("auth", tried);
    if (reply.type !== "ok") return showError(reply.text);
    login = tried;
    $("password").value = "";
    $("login-form").hidden = true;
    showError("");
    note("logged in as " + reply.user);
    setStatus("up", "connected");
    if (loggedIn) { const go = loggedIn; loggedIn = null; go(); }
  });

  $("join-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = $("name").value.trim();
    if (name) await setName(name, false);
    const pattern = $("pattern").value.trim();
    if (pattern) {
      await subscribe(pattern, false);
      if (!$("channel").value && isConcrete(pattern)) $("channel").value = pattern;
      $("pattern").value = "";
    }
  });
  $("sub-button").addEventListener("click", async () => {
    const pattern = $("pattern").value.trim();
    if (!pattern) return;
    await subscribe(pattern, false);
    if (!$("channel").value && isConcrete(pattern)) $("channel").value = pattern;
    $("pattern").value = "";
  });
  $("pub-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const channel = $("channel").value.trim(), text = $("text").value;
    if (!channel) return showError("which channel? (a name, or @name for a direct message)");
    if (await publish(channel, text)) $("text").value = "";
  });
  $("messages").addEventListener("scroll", () => {
    const list = $("messages");
    if (list.scrollHeight - list.scrollTop - list.clientHeight < 40) $("jump").hidden = true;
  });
  $("jump").addEventListener("click", () => {
    const list = $("messages");
    list.scrollTop = list.scrollHeight;
    $("jump").hidden = true;
  });

  connect();
})();
