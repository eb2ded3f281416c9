// runwarden's one script: live updates, theme and zone switches, keyboard shortcuts.
// Every page works without it; it only makes pages live. No framework, no build step.
(function () {
  "use strict";
  var root = document.querySelector('meta[name="runwarden-root"]').content;

  // --- Live: one run-event stream per tab. Each event fires "runs-changed" on <body>;
  // fragments refetch themselves with hx-trigger="runs-changed from:body delay:500ms"
  // (htmx's delay is a debounce). Event data is never put into the page.
  var banner = document.getElementById("live-banner");
  var leaving = false;
  var bannerTimer = null;
  // Leaving the page aborts its streams; that is not a lost connection.
  window.addEventListener("pagehide", function () { leaving = true; });
  window.addEventListener("beforeunload", function () { leaving = true; });
  function streamLost() {
    // A short grace, so a page that is being left, or a blip, never flashes the banner.
    if (leaving || bannerTimer || !banner) return;
    bannerTimer = setTimeout(function () { if (!leaving) banner.hidden = false; }, 1000);
  }
  function streamBack() {
    clearTimeout(bannerTimer);
    bannerTimer = null;
    if (banner) banner.hidden = true;
  }
  function changed() {
    document.body.dispatchEvent(new CustomEvent("runs-changed", { bubbles: true }));
  }
  function connect() {
    if (!window.EventSource || !document.querySelector("[data-live]")) return;
    var stream = new EventSource(root + "/api/runs/stream", { withCredentials: true });
    // Closed on leaving: Chromium can keep an abandoned stream's connection, and with six
    // connections per host over HTTP/1.1, a few of those stall every later page.
    window.addEventListener("pagehide", function () { stream.close(); });
    var lost = false;
    ["run.created", "run.started", "run.completed", "run.failed", "run.deleted"].forEach(
      function (name) { stream.addEventListener(name, changed); });
    stream.onopen = function () {
      if (lost) changed(); // events may have been missed meanwhile
      lost = false;
      streamBack();
    };
    stream.onerror = function () {
      if (leaving) return;
      lost = true;
      streamLost();
      if (stream.readyState === EventSource.CLOSED) {
        // The server refused or ended the stream for good (an error status): reopen.
        setTimeout(connect, 2000);
      }
    };
  }

  // --- CSRF: htmx sends X-CSRF-Token from <body hx-headers>; our own fetches send it too.
  function csrfHeaders() {
    var meta = document.querySelector('meta[name="runwarden-csrf"]');
    return meta && meta.content ? { "X-CSRF-Token": meta.content } : {};
  }

  // --- Elapsed time of running runs: <span data-elapsed-since="ISO">, ticked every second.
  function elapsed(seconds) {
    seconds = Math.max(0, Math.floor(seconds));
    if (seconds < 60) return seconds + " s";
    var m = Math.floor(seconds / 60), s = seconds % 60;
    if (m < 60) return m + " m " + (s < 10 ? "0" : "") + s + " s";
    var h = Math.floor(m / 60);
    m = m % 60;
    return h + " h " + (m < 10 ? "0" : "") + m + " m";
  }
  function tick() {
    var now = Date.now();
    document.querySelectorAll("[data-elapsed-since]").forEach(function (el) {
      var since = Date.parse(el.getAttribute("data-elapsed-since"));
      if (!isNaN(since)) el.textContent = elapsed((now - since) / 1000);
    });
  }

  // --- Theme: auto (the system's), light, dark; remembered in this browser.
  var order = ["auto", "light", "dark"];
  var themeButton = document.getElementById("theme-switch");
  function showTheme(theme) {
    themeButton.textContent = "Theme: " + theme;
    themeButton.setAttribute("aria-pressed", theme === "auto" ? "false" : "true");
  }
  if (themeButton) {
    themeButton.hidden = false;
    showTheme(document.documentElement.dataset.theme || "auto");
    themeButton.addEventListener("click", function () {
      var now = document.documentElement.dataset.theme || "auto";
      var next = order[(order.indexOf(now) + 1) % order.length];
      if (next === "auto") {
        delete document.documentElement.dataset.theme;
        try { localStorage.removeItem("runwarden-theme"); } catch (e) { /* ignore */ }
      } else {
        document.documentElement.dataset.theme = next;
        try { localStorage.setItem("runwarden-theme", next); } catch (e) { /* ignore */ }
      }
      showTheme(next);
    });
  }

  // --- Display zone: the select applies at once; "local" sends the browser's zone.
  var zone = document.getElementById("zone");
  if (zone) {
    zone.addEventListener("change", function () {
      var value = zone.value === "local"
        ? Intl.DateTimeFormat().resolvedOptions().timeZone : zone.value;
      document.cookie = "runwarden_zone=" + value +
        "; path=/; max-age=31536000; samesite=strict";
      location.reload();
    });
  }

  // --- Keyboard: "/" focuses the search (not while typing in a field). Nothing destructive
  // has a one-key shortcut.
  document.addEventListener("keydown", function (event) {
    if (event.key !== "/" || event.ctrlKey || event.metaKey || event.altKey) return;
    var target = event.target;
    if (target.closest && target.closest("input, textarea, select, [contenteditable]")) return;
    var search = document.getElementById("search");
    if (search) { event.preventDefault(); search.focus(); }
  });

  // --- ANSI colours of live log lines: the server's mapping (app/ui/ansi.py), as DOM
  // nodes with classes. Text only ever goes in through textContent.
  var ESCAPES = /\x1b\[([0-?]*)[ -\/]*([@-~])?|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[\s\S]?/g;
  var CONTROLS = /[\x00-\x08\x0a-\x1f\x7f]/g;
  function applySgr(style, params) {
    var codes = params ? params.split(";").map(function (p) {
      return /^\d+$/.test(p) ? parseInt(p, 10) : 0;
    }) : [0];
    var fg = style.fg, bg = style.bg, bold = style.bold;
    for (var i = 0; i < codes.length; i++) {
      var c = codes[i];
      if (c === 0) { fg = null; bg = null; bold = false; }
      else if (c === 1) bold = true;
      else if (c === 22) bold = false;
      else if (c >= 30 && c <= 37) fg = c - 30;
      else if (c >= 90 && c <= 97) fg = c - 90 + 8;
      else if (c === 39) fg = null;
      else if (c >= 40 && c <= 47) bg = c - 40;
      else if (c >= 100 && c <= 107) bg = c - 100 + 8;
      else if (c === 49) bg = null;
      else if (c === 38 || c === 48) {
        // 256 or true colour: not shown, and their arguments are not codes.
        var kind = codes[i + 1];
        i += kind === 5 ? 2 : kind === 2 ? 4 : 0;
      }
    }
    return { fg: fg, bg: bg, bold: bold };
  }
  function appendAnsi(parent, text) {
    var style = { fg: null, bg: null, bold: false };
    function emit(chunk) {
      chunk = chunk.replace(CONTROLS, "");
      if (!chunk) return;
      var names = [];
      if (style.bold) names.push("ansi-bold");
      if (style.fg !== null) names.push("ansi-fg-" + style.fg);
      if (style.bg !== null) names.push("ansi-bg-" + style.bg);
      if (!names.length) { parent.appendChild(document.createTextNode(chunk)); return; }
      var span = document.createElement("span");
      span.className = names.join(" ");
      span.textContent = chunk;
      parent.appendChild(span);
    }
    var last = 0, match;
    ESCAPES.lastIndex = 0;
    while ((match = ESCAPES.exec(text)) !== null) {
      emit(text.slice(last, match.index));
      last = ESCAPES.lastIndex;
      if (match[2] === "m") style = applySgr(style, match[1]);
    }
    emit(text.slice(last));
  }
  function lineNode(line) {
    var div = document.createElement("div");
    var stream = ["stdout", "stderr", "system"].indexOf(line.stream) >= 0 ? line.stream : "stdout";
    div.className = "ll ll-" + stream;
    div.setAttribute("data-n", String(line.n));
    var number = document.createElement("span");
    number.className = "ln";
    number.setAttribute("aria-hidden", "true");
    number.textContent = String(line.n + 1);
    var body = document.createElement("span");
    body.className = "lt";
    appendAnsi(body, String(line.text));
    div.appendChild(number);
    div.appendChild(body);
    return div;
  }

  // --- The log viewer: opens on the server-rendered last lines, follows the run's log
  // stream from the line after them (the browser resumes with Last-Event-ID), keeps at
  // most data-max-lines lines, pauses following when the reader scrolls up.
  function logViewer(section, headers) {
    var box = section.querySelector(".log");
    var data = section.dataset;
    var maxLines = parseInt(data.maxLines, 10) || 5000;
    var first = parseInt(data.first, 10), end = parseInt(data.end, 10);
    var firstAvailable = parseInt(data.firstAvailable, 10);
    var count = box.querySelectorAll(".ll").length;
    var followButton = section.querySelector(".log-follow");
    var jumpButton = section.querySelector(".log-jump");
    var earlier = section.querySelector(".log-earlier");
    var earlierLink = earlier.querySelector("a");
    var earlierCount = earlier.querySelector(".log-earlier-count");
    var status = section.querySelector(".log-status");
    var live = data.follow === "on" && !!window.EventSource;
    var autoScroll = true, tailCut = false, loading = false;
    var pending = [], flushTimer = null, stream = null, refusals = 0;

    function atBottom() { return box.scrollHeight - box.scrollTop - box.clientHeight < 8; }
    function toBottom() { box.scrollTop = box.scrollHeight; }
    function showFollow() {
      // The label stays; aria-pressed (and its style) says whether it is on.
      followButton.setAttribute("aria-pressed", autoScroll ? "true" : "false");
      jumpButton.hidden = autoScroll && !tailCut;
    }
    function setAuto(on) {
      autoScroll = on;
      if (on) toBottom();
      showFollow();
    }
    function showEarlier() {
      var hidden = Math.max(first - firstAvailable, 0);
      earlier.hidden = hidden === 0;
      earlierCount.textContent = String(hidden);
      earlierLink.setAttribute("href", data.pageUrl + "?before=" + first + "#log");
    }
    function dropTop(n) {
      while (n-- > 0) {
        var top = box.querySelector(".ll");
        if (!top) break;
        var chunk = top.parentNode;
        chunk.removeChild(top);
        if (chunk !== box && !chunk.querySelector(".ll")) chunk.parentNode.removeChild(chunk);
        count--;
      }
      var next = box.querySelector(".ll");
      first = next ? parseInt(next.getAttribute("data-n"), 10) : end;
    }
    function flush() {
      flushTimer = null;
      if (!pending.length || tailCut) { pending = []; return; }
      var empty = box.querySelector(".log-empty");
      if (empty) empty.parentNode.removeChild(empty);
      if (count === 0) first = pending[0].n;
      var fragment = document.createDocumentFragment();
      pending.forEach(function (line) { fragment.appendChild(lineNode(line)); });
      count += pending.length;
      pending = [];
      box.appendChild(fragment);
      if (count > maxLines) dropTop(count - maxLines);
      showEarlier();
      if (autoScroll) toBottom();
    }
    function queue(line) {
      pending.push(line);
      // A burst larger than the page may hold: only its newest lines are kept.
      if (pending.length > maxLines) pending.splice(0, pending.length - maxLines);
      if (!flushTimer) flushTimer = setTimeout(flush, 50);
    }
    function say(text) { status.textContent = text; }
    function follow() {
      var source = new EventSource(data.streamUrl + "?from=" + end, { withCredentials: true });
      stream = source;
      source.onopen = function () { refusals = 0; say("Following live output."); };
      source.addEventListener("line", function (event) {
        var line = JSON.parse(event.data);
        if (typeof line.n !== "number" || line.n < end) return; // already shown
        end = line.n + 1;
        queue(line);
      });
      source.addEventListener("done", function (event) {
        source.close();
        flush();
        var done = {};
        try { done = JSON.parse(event.data); } catch (e) { /* keep the plain message */ }
        say("Stream ended: the run has ended" + (done.status ? " (" + done.status + ")" : "") + ".");
        followButton.hidden = true;
      });
      source.onerror = function () {
        if (leaving) return;
        if (source.readyState === EventSource.CLOSED) {
          // Refused (too many streams, the run deleted, the session ended): a few more
          // tries from the last line shown, then leave it to the reader.
          if (++refusals > 5) { say("Live output stopped; reload the page to resume."); return; }
          say("Live output interrupted; retrying…");
          setTimeout(function () { if (stream === source) follow(); }, 5000);
        } else {
          say("Live output interrupted; reconnecting…");
        }
      };
    }

    // As for the run-event stream: never leave a stream's connection behind.
    window.addEventListener("pagehide", function () { if (stream) stream.close(); });

    box.addEventListener("scroll", function () {
      var bottom = atBottom();
      if (bottom !== autoScroll) { autoScroll = bottom; showFollow(); }
    });
    followButton.addEventListener("click", function () { setAuto(!autoScroll); });
    jumpButton.addEventListener("click", function () {
      // Lines after the page were dropped to load earlier ones: the tail is a new page.
      if (tailCut) { location.href = data.pageUrl + "#log"; return; }
      setAuto(true);
    });
    earlierLink.addEventListener("click", function (event) {
      event.preventDefault();
      if (loading) return;
      loading = true;
      fetch(data.earlierUrl + "?before=" + first, { credentials: "same-origin", headers: headers() })
        .then(function (response) {
          if (!response.ok) throw new Error("HTTP " + response.status);
          return response.text();
        })
        .then(function (html) {
          // Server-rendered and escaped, like an htmx swap; log text never reaches HTML here
          // from the browser side.
          var template = document.createElement("template");
          template.innerHTML = html;
          var chunk = template.content.querySelector(".log-chunk");
          if (!chunk) return;
          var added = chunk.querySelectorAll(".ll").length;
          var oldHeight = box.scrollHeight, oldTop = box.scrollTop;
          box.insertBefore(chunk, box.firstChild);
          // Keep the lines the reader was looking at where they were.
          box.scrollTop = oldTop + (box.scrollHeight - oldHeight);
          first = parseInt(chunk.getAttribute("data-first"), 10);
          firstAvailable = parseInt(chunk.getAttribute("data-first-available"), 10);
          count += added;
          if (count > maxLines) {
            // Too many lines: the newest go, and following stops until "Jump to end".
            var lines = box.querySelectorAll(".ll");
            for (var i = lines.length - 1; i >= 0 && count > maxLines; i--) {
              lines[i].parentNode.removeChild(lines[i]);
              count--;
            }
            if (!tailCut) {
              tailCut = true;
              if (stream) { stream.close(); stream = null; }
              say("Newer lines are hidden to keep the page small; Jump to end shows them.");
            }
            autoScroll = false;
            showFollow();
          }
          showEarlier();
        })
        .catch(function () { say("Could not load earlier lines; try again."); })
        .then(function () { loading = false; });
    });

    toBottom();
    if (live) {
      followButton.hidden = false;
      showFollow();
      follow();
    } else {
      jumpButton.hidden = true;
    }
  }

  // --- The run page's log viewer (its own section below).
  var viewer = document.querySelector("[data-log-viewer]");
  if (viewer) logViewer(viewer, csrfHeaders);

  // --- A live fragment holding ticked rows (the runs table before a bulk action) is not
  // refreshed while any row is ticked: the reader's selection is never swapped away.
  document.addEventListener("htmx:confirm", function (event) {
    var keeper = event.target.closest && event.target.closest("[data-keep-while-selected]");
    if (keeper && keeper.querySelector("input[type=checkbox]:checked")) event.preventDefault();
  });

  tick();
  setInterval(tick, 1000);
  connect();
})();

