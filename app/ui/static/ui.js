// runwarden's one script: live updates, theme and zone switches, keyboard shortcuts.
// Every page works without it; it only makes pages live. No framework, no build step.
(function () {
  "use strict";
  var root = document.querySelector('meta[name="runwarden-root"]').content;

  // --- Live: one run-event stream per tab. Each event fires "runs-changed" on <body>;
  // fragments refetch themselves with hx-trigger="runs-changed from:body delay:500ms"
  // (htmx's delay is a debounce). Event data is never put into the page.
  var banner = document.getElementById("live-banner");
  function connect() {
    if (!window.EventSource || !document.querySelector("[data-live]")) return;
    var stream = new EventSource(root + "/api/runs/stream", { withCredentials: true });
    var lost = false;
    ["run.created", "run.started", "run.completed", "run.failed", "run.deleted"].forEach(
      function (name) {
        stream.addEventListener(name, function () {
          document.body.dispatchEvent(new CustomEvent("runs-changed", { bubbles: true }));
        });
      });
    stream.onopen = function () {
      if (lost) document.body.dispatchEvent(new CustomEvent("runs-changed", { bubbles: true }));
      lost = false;
      banner.hidden = true;
    };
    stream.onerror = function () {
      lost = true;
      banner.hidden = false;
      if (stream.readyState === EventSource.CLOSED) {
        // The server ended the stream (it was behind, or the database feed broke): reopen.
        setTimeout(connect, 2000);
      }
    };
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

  connect();
})();
