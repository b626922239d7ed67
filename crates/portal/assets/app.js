// Ferry portal: small progressive enhancements. Every page works for reading without this file.
(function () {
  "use strict";
  function csrf() {
    var m = document.cookie.match(/(?:^|;\s*)Octopus-Csrf-Token=([^;]+)/);
    return m ? decodeURIComponent(m[1]) : "";
  }
  document.addEventListener("DOMContentLoaded", function () {
    // Selects that navigate or filter when changed.
    document.querySelectorAll("select[data-autosubmit]").forEach(function (s) {
      s.addEventListener("change", function () { s.form.submit(); });
    });
    // Copy buttons.
    document.querySelectorAll("[data-copy]").forEach(function (b) {
      b.addEventListener("click", function () {
        var t = document.getElementById(b.getAttribute("data-copy"));
        if (t && navigator.clipboard) {
          navigator.clipboard.writeText(t.textContent.trim()).then(function () { b.textContent = "Copied"; });
        }
      });
    });
    // Confirm destructive actions.
    document.querySelectorAll("form[data-confirm]").forEach(function (f) {
      f.addEventListener("submit", function (e) {
        if (!window.confirm(f.getAttribute("data-confirm"))) { e.preventDefault(); }
      });
    });
    // Uploads with progress.
    document.querySelectorAll("form[data-upload]").forEach(function (f) {
      f.addEventListener("submit", function (e) {
        e.preventDefault();
        var bar = f.querySelector("progress"), status = f.querySelector("[data-upload-status]");
        var xhr = new XMLHttpRequest();
        xhr.open("POST", f.action);
        xhr.setRequestHeader("X-Octopus-Csrf-Token", csrf());
        xhr.setRequestHeader("X-Ferry-Upload", "xhr");
        xhr.upload.onprogress = function (ev) {
          if (ev.lengthComputable && bar) { bar.hidden = false; bar.max = ev.total; bar.value = ev.loaded; }
          if (status && ev.lengthComputable) { status.textContent = Math.round(100 * ev.loaded / ev.total) + "% uploaded"; }
        };
        xhr.onload = function () {
          if (xhr.status >= 200 && xhr.status < 400) { window.location = xhr.responseURL || window.location.href; }
          else if (status) {
            var msg = xhr.responseText;
            try { var j = JSON.parse(xhr.responseText); msg = j.ErrorMessage + " " + (j.Errors || []).join(" "); } catch (x) { /* text */ }
            status.textContent = msg; status.className = "error";
          }
        };
        xhr.onerror = function () { if (status) { status.textContent = "The upload failed: the server could not be reached."; status.className = "error"; } };
        xhr.send(new FormData(f));
      });
    });
    // Live task log: the server sends the task's state and log as HTML whenever it changes.
    var live = document.querySelector("[data-live]");
    if (live && window.EventSource) {
      var es = new EventSource(live.getAttribute("data-live"));
      es.addEventListener("task", function (ev) {
        // Keep what the user opened, typed and focused across the swap.
        var open = {}, typed = {};
        var focused = document.activeElement && live.contains(document.activeElement) ? document.activeElement.id : "";
        live.querySelectorAll("details[id]").forEach(function (d) { open[d.id] = d.open; });
        live.querySelectorAll("textarea[id], input[id]:not([type=hidden])").forEach(function (el) { typed[el.id] = el.value; });
        live.innerHTML = ev.data;
        live.querySelectorAll("details[id]").forEach(function (d) { if (d.id in open) { d.open = open[d.id]; } });
        Object.keys(typed).forEach(function (id) { var el = document.getElementById(id); if (el && typed[id]) { el.value = typed[id]; } });
        if (focused) { var f = document.getElementById(focused); if (f) { f.focus(); } }
      });
      es.addEventListener("done", function () { es.close(); live.setAttribute("data-finished", "true"); });
      es.onerror = function () { /* the browser reconnects by itself */ };
    }
  });
})();
