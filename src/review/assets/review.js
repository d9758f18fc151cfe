// cutout review page: background toggle, before/after slider, zoom, and
// live updates by long polling /live. No framework; works offline.
(function () {
  "use strict";
  var KEY = "cutout-review-bg";
  function setBg(bg) {
    document.body.classList.remove("bg-checker", "bg-white", "bg-black");
    document.body.classList.add("bg-" + bg);
    try { localStorage.setItem(KEY, bg); } catch (e) { /* private mode */ }
  }
  function init() {
    var saved = null;
    try { saved = localStorage.getItem(KEY); } catch (e) { saved = null; }
    if (saved === "white" || saved === "black" || saved === "checker") setBg(saved);
    document.querySelectorAll("[data-bg]").forEach(function (b) {
      b.addEventListener("click", function () { setBg(b.getAttribute("data-bg")); });
    });
    var cmp = document.getElementById("compare");
    if (cmp) {
      var after = cmp.querySelector(".after"), slider = cmp.querySelector(".slider");
      var move = function () { after.style.clipPath = "inset(0 0 0 " + slider.value + "%)"; };
      slider.addEventListener("input", move);
      move();
    }
    document.querySelectorAll("figure.zoom img").forEach(function (img) {
      img.addEventListener("click", function () { img.parentNode.classList.toggle("zoomed"); });
    });
    var grid = document.getElementById("grid");
    if (grid && grid.hasAttribute("data-live-after")) live(grid, grid.getAttribute("data-live-after"));
  }
  function live(grid, after) {
    var q = grid.getAttribute("data-query") || "";
    var url = "/live?after=" + encodeURIComponent(after) + (q ? "&" + q : "");
    fetch(url, { cache: "no-store" }).then(function (r) {
      if (!r.ok) throw new Error("live " + r.status);
      return r.json();
    }).then(function (j) {
      if (j.cards) {
        grid.insertAdjacentHTML("afterbegin", j.cards);
        var empty = document.querySelector(".empty");
        if (empty) empty.remove();
      }
      Object.keys(j.since_start || {}).forEach(function (k) {
        var el = document.getElementById("since-" + k);
        if (el) { el.textContent = j.since_start[k] + " " + k; el.setAttribute("data-count", j.since_start[k]); }
      });
      live(grid, String(j.newest));
    }).catch(function () {
      setTimeout(function () { live(grid, after); }, 5000);
    });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
