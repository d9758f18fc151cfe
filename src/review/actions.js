// cutout review page: actions and keyboard (vendored, no dependencies).
// Tiles are elements with data-job="<id>" (data-outcome="failed" etc.);
// buttons inside a tile carry data-action="approve|flag|unmark|retry|redo|confirm".
// Keys: arrows move between tiles, a approve, f flag, r redo (or retry on a
// failed/rejected tile). Every POST sends the X-Cutout-Csrf header from
// /api/session (and X-Cutout-User when a name was given).
(function () {
  "use strict";
  var session = null;
  function load() {
    return fetch("/api/session", { credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (s) { session = s; document.documentElement.dataset.actions = s.actions ? (s.logged_in ? "on" : "login") : "off"; return s; });
  }
  function tiles() { return Array.prototype.slice.call(document.querySelectorAll("[data-job]")); }
  function current() { return document.querySelector("[data-job].selected") || tiles()[0] || null; }
  function select(t) {
    tiles().forEach(function (x) { x.classList.remove("selected"); });
    if (t) { t.classList.add("selected"); t.scrollIntoView({ block: "nearest" }); if (t.focus) t.focus({ preventScroll: true }); }
  }
  function say(tile, text, bad) {
    var s = tile && tile.querySelector(".action-status");
    if (!s && tile) { s = document.createElement("div"); s.className = "action-status"; tile.appendChild(s); }
    if (s) { s.textContent = text; s.classList.toggle("bad", !!bad); }
  }
  function post(path) {
    var h = { "X-Cutout-Csrf": (session && session.csrf) || "" };
    var name = localStorage.getItem("cutout-user");
    if (name) h["X-Cutout-User"] = name;
    return fetch(path, { method: "POST", credentials: "same-origin", headers: h })
      .then(function (r) { return r.json().then(function (b) { return { ok: r.ok, body: b }; }); });
  }
  function act(tile, action) {
    if (!tile || !session) return;
    if (!session.actions) { say(tile, "actions are off", true); return; }
    if (!session.logged_in) { location.href = "/login"; return; }
    var id = tile.dataset.job, path = "/api/jobs/" + id + "/" + action;
    var chosen = Promise.resolve(null);
    if (action === "redo") {
      chosen = fetch("/api/providers").then(function (r) { return r.json(); }).then(function (p) {
        var name = window.prompt("Redo with which provider? " + p.providers.join(", "), p.providers[0] || "");
        return name;
      });
    }
    chosen.then(function (provider) {
      if (action === "redo") { if (!provider) return; path += "?provider=" + encodeURIComponent(provider); }
      say(tile, action + "…");
      return post(path).then(function (res) {
        if (!res.ok) { say(tile, res.body.error ? res.body.error.message : "refused", true); return; }
        var badge = tile.querySelector(".mark-badge");
        if (!badge && (action === "approve" || action === "flag")) { badge = document.createElement("span"); badge.className = "badge mark-badge"; (tile.querySelector(".meta") || tile).appendChild(badge); }
        if (badge && (action === "approve" || action === "flag")) badge.textContent = action === "approve" ? "approved" : "flagged";
        if (badge && action === "unmark") badge.textContent = "";
        tile.dataset.mark = action === "approve" ? "approved" : action === "flag" ? "flagged" : (tile.dataset.mark || "");
        say(tile, action === "retry" ? "sent back to the inbox" : action + " done");
        document.dispatchEvent(new CustomEvent("cutout:action", { detail: { job: id, action: action, result: res.body.result } }));
      });
    });
  }
  function move(dx, dy) {
    var all = tiles(), cur = current();
    if (!all.length) return;
    var i = Math.max(0, all.indexOf(cur));
    var perRow = 1, top = all[0].offsetTop;
    while (perRow < all.length && all[perRow].offsetTop === top) perRow++;
    var j = Math.min(all.length - 1, Math.max(0, i + dx + dy * perRow));
    select(all[j]);
  }
  document.addEventListener("keydown", function (e) {
    if (e.target && /INPUT|TEXTAREA|SELECT/.test(e.target.tagName)) return;
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    var t = current();
    switch (e.key) {
      case "ArrowRight": move(1, 0); break;
      case "ArrowLeft": move(-1, 0); break;
      case "ArrowDown": move(0, 1); break;
      case "ArrowUp": move(0, -1); break;
      case "a": act(t, "approve"); break;
      case "f": act(t, "flag"); break;
      case "r": act(t, t && /failed|rejected/.test(t.dataset.outcome || "") ? "retry" : "redo"); break;
      default: return;
    }
    e.preventDefault();
  });
  document.addEventListener("click", function (e) {
    var b = e.target.closest && e.target.closest("[data-action]");
    if (!b) return;
    var tile = b.closest("[data-job]");
    e.preventDefault();
    select(tile);
    act(tile, b.dataset.action);
  });
  // Buttons and mark badges on every tile, also on tiles added later
  // (live updates).
  function decorate(root) {
    if (!session || !session.actions) return;
    var fresh = [];
    (root.querySelectorAll ? root.querySelectorAll("[data-job]") : []).forEach(function (t) {
      if (t.dataset.decorated) return;
      t.dataset.decorated = "1";
      fresh.push(t.dataset.job);
      var bar = document.createElement("div");
      bar.className = "actions";
      var failed = /failed|rejected/.test(t.dataset.outcome || "");
      var names = failed ? ["retry"] : /succeeded|duplicate/.test(t.dataset.outcome || "") ? ["approve", "flag", "redo", "confirm"] : [];
      names.forEach(function (n) {
        var b = document.createElement("button");
        b.type = "button"; b.dataset.action = n; b.textContent = n; b.title = n + " (" + ({ approve: "a", flag: "f", redo: "r", retry: "r", confirm: "" })[n] + ")";
        bar.appendChild(b);
      });
      if (names.length) (t.querySelector(".meta") || t).appendChild(bar);
    });
    if (!fresh.length) return;
    fetch("/api/marks?jobs=" + fresh.join(",")).then(function (r) { return r.json(); }).then(function (m) {
      Object.keys(m.marks || {}).forEach(function (job) {
        document.querySelectorAll('[data-job="' + job + '"]').forEach(function (t) {
          t.dataset.mark = m.marks[job];
          var b = t.querySelector(".mark-badge");
          if (!b) { b = document.createElement("span"); b.className = "badge mark-badge"; (t.querySelector(".meta") || t).appendChild(b); }
          b.textContent = m.marks[job];
        });
      });
    });
  }
  window.cutoutActions = { act: act, reload: load };
  load().then(function () {
    decorate(document);
    new MutationObserver(function () { decorate(document); }).observe(document.body, { childList: true, subtree: true });
  });
})();
