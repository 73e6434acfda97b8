// The path browser's script (ablation_paths.report). Inlined into the page and allowed by the
// page's Content-Security-Policy through its SHA-256 hash; reads the data from #report-data.
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("report-data").textContent);
  var n = D.times.length;
  var slider = document.getElementById("t-slider");
  var tValue = document.getElementById("t-value");
  var playBtn = document.getElementById("play");
  var timer = null;
  function name(k) { return D.names[String(k)]; }
  function fmt(p) { return (typeof p === "number" && isFinite(p)) ? p.toFixed(4) : "n/a"; }
  function val(p) { return (typeof p === "number" && isFinite(p)) ? p : -1; }
  document.getElementById("target-img").src = D.images[D.target_image];
  document.getElementById("baseline-img").src = D.images[D.baseline_image];
  Array.prototype.forEach.call(document.querySelectorAll(".target-name"), function (el) {
    el.textContent = name(D.target);
  });
  Array.prototype.forEach.call(document.querySelectorAll(".overlay img.under"), function (el) {
    el.src = D.images[D.target_image];
  });
  var opacity = document.getElementById("heat-opacity");
  var opacityValue = document.getElementById("heat-opacity-value");
  function setOpacity() {
    var v = Number(opacity.value) / 100;
    document.body.style.setProperty("--heat-opacity", String(v));
    opacityValue.textContent = v.toFixed(2);
  }
  if (opacity) { opacity.addEventListener("input", setOpacity); setOpacity(); }
  function fillPanel(path, i) {
    var pre = path.prefix;
    var frame = document.getElementById(pre + "frame-img");
    if (frame && path.frames) {
      frame.src = D.images[path.frames[i]]; frame.dataset.index = String(i);
    }
    var mask = document.getElementById(pre + "mask-img");
    if (mask && path.masks) { mask.src = D.images[path.masks[i]]; mask.dataset.index = String(i); }
    var row = path.probs[i];
    var tp = document.getElementById(pre + "target-prob");
    tp.textContent = fmt(row[D.classes.indexOf(D.target)]);
    tp.dataset.value = String(row[D.classes.indexOf(D.target)]);
    var order = [];
    for (var j = 0; j < D.classes.length; j++) {
      if (D.classes[j] !== D.target) { order.push(j); }
    }
    order.sort(function (a, b) { return val(row[b]) - val(row[a]); });
    var list = document.getElementById(pre + "top-classes");
    while (list.firstChild) { list.removeChild(list.firstChild); }
    order.slice(0, D.top).forEach(function (j) {
      var li = document.createElement("li");
      li.dataset.class = String(D.classes[j]);
      li.dataset.prob = String(row[j]);
      var nm = document.createElement("span");
      nm.className = "cname";
      nm.textContent = name(D.classes[j]);
      nm.title = name(D.classes[j]);
      var pr = document.createElement("span");
      pr.className = "prob";
      pr.textContent = fmt(row[j]);
      var bar = document.createElement("span");
      bar.className = "bar";
      bar.style.width = Math.round(120 * Math.max(0, val(row[j]))) + "px";
      li.appendChild(nm); li.appendChild(pr); li.appendChild(bar);
      list.appendChild(li);
    });
  }
  function show(i) {
    i = Math.max(0, Math.min(n - 1, i));
    slider.value = String(i);
    tValue.textContent = D.times[i].toFixed(4);
    tValue.dataset.index = String(i);
    document.body.dataset.index = String(i);
    D.paths.forEach(function (p) { fillPanel(p, i); });
    var marker = document.getElementById("t-marker");
    var x = D.svg.left + D.times[i] * D.svg.width;
    marker.setAttribute("x1", x); marker.setAttribute("x2", x);
  }
  function current() { return parseInt(slider.value, 10); }
  function stop() {
    if (timer !== null) { clearInterval(timer); timer = null; }
    playBtn.textContent = "\u25B6 Play"; playBtn.setAttribute("aria-pressed", "false");
  }
  function play() {
    if (timer !== null) { return; }
    if (current() >= n - 1) { show(0); }
    playBtn.textContent = "\u23F8 Pause"; playBtn.setAttribute("aria-pressed", "true");
    timer = setInterval(function () {
      if (current() >= n - 1) { stop(); return; }
      show(current() + 1);
    }, D.interval);
  }
  function toggle() { if (timer === null) { play(); } else { stop(); } }
  slider.addEventListener("input", function () { show(current()); });
  playBtn.addEventListener("click", toggle);
  document.addEventListener("keydown", function (e) {
    var tag = e.target && e.target.tagName;
    if (e.key === "ArrowRight" || e.key === "ArrowLeft") {
      if (e.target === slider) { return; }  // the range input moves itself
      e.preventDefault();
      stop();
      show(current() + (e.key === "ArrowRight" ? 1 : -1));
    } else if (e.key === " " || e.code === "Space") {
      if (tag === "BUTTON" || tag === "TEXTAREA" || tag === "SELECT" ||
          (tag === "INPUT" && e.target.type !== "range")) { return; }
      e.preventDefault();
      toggle();
    }
  });
  document.getElementById("curve-hit").addEventListener("click", function (e) {
    var svg = document.getElementById("curve");
    var box = svg.getBoundingClientRect();
    var t = ((e.clientX - box.left) * D.svg.total / box.width - D.svg.left) / D.svg.width;
    var best = 0;
    for (var k = 1; k < n; k++) {
      if (Math.abs(D.times[k] - t) < Math.abs(D.times[best] - t)) { best = k; }
    }
    stop();
    show(best);
  });
  show(0);
  document.body.dataset.ready = "1";
})();
