// Progressive enhancement for the tidings web UI. Every action here is also a plain form post:
// this script only posts the same forms with fetch(), swaps in the page the server answers
// with, and adds drag and drop, in-place editing, live job progress and a copy button.
(function () {
  "use strict";

  var statusBox = document.getElementById("status");

  function setStatus(text, kind) {
    if (!statusBox) { return; }
    statusBox.textContent = text;
    statusBox.className = "save-status" + (kind ? " " + kind : "");
  }

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  // Replace <main> with the one of a page the server rendered, keeping the scroll position.
  function swapIn(html) {
    var doc = new DOMParser().parseFromString(html, "text/html");
    var fresh = doc.getElementById("content");
    var main = document.getElementById("content");
    if (!fresh || !main) { return false; }
    var y = window.scrollY;
    var adopted = document.importNode(fresh, true);
    main.replaceWith(adopted);
    var meta = doc.querySelector('meta[name="csrf-token"]');
    if (meta) { document.querySelector('meta[name="csrf-token"]').setAttribute("content", meta.getAttribute("content")); }
    if (doc.title) { document.title = doc.title; }
    window.scrollTo(0, y);
    init(adopted);
    return true;
  }

  function send(url, data) {
    setStatus("Saving…", "busy");
    return fetch(url, {
      method: "POST", body: data, credentials: "same-origin", headers: { "X-Requested-With": "fetch" }
    }).then(function (response) {
      return response.text().then(function (html) {
        swapIn(html);
        if (response.ok) { setStatus("Saved", "ok"); } else { setStatus("Not saved: see the message on the page", "error"); }
        return response.ok;
      });
    }).catch(function () {
      // Nothing was swapped: what the user typed is still in the form, to send again.
      setStatus("Not saved: the server did not answer. Your change is still in the form.", "error");
      return false;
    });
  }

  function refresh() {
    return fetch(window.location.href, { credentials: "same-origin" })
      .then(function (r) { return r.text(); })
      .then(swapIn);
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.hasAttribute("data-enhance")) { return; }
    if ((form.method || "").toLowerCase() !== "post") { return; }
    event.preventDefault();
    send(form.action, new FormData(form, event.submitter || undefined));
  });

  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target instanceof HTMLSelectElement && target.classList.contains("auto-submit") && target.form) {
      target.form.requestSubmit();
    }
  });

  // --- in-place editing of titles and summaries -------------------------------------------------

  function startEdit(el) {
    if (el.isContentEditable) { return; }
    var original = el.textContent;
    try { el.contentEditable = "plaintext-only"; } catch (e) { el.contentEditable = "true"; }
    el.classList.add("editing");
    el.focus();
    var finished = false;
    function finish(save) {
      if (finished) { return; }
      finished = true;
      el.contentEditable = "false";
      el.classList.remove("editing");
      var value = el.textContent.trim();
      if (!save || value === original.trim()) { el.textContent = original; return; }
      var form = document.getElementById("edit-" + el.getAttribute("data-entry"));
      if (!form) { return; }
      var field = form.elements.namedItem(el.getAttribute("data-inplace"));
      if (!field) { return; }
      field.value = value;
      form.requestSubmit();
    }
    el.addEventListener("keydown", function (event) {
      var multiline = el.getAttribute("data-inplace") === "summary";
      if (event.key === "Escape") { event.preventDefault(); finish(false); }
      if (event.key === "Enter" && (!multiline || event.ctrlKey || event.metaKey)) { event.preventDefault(); finish(true); }
    });
    el.addEventListener("blur", function () { finish(true); }, { once: true });
  }

  // --- drag and drop between and within sections ------------------------------------------------

  var dragged = null;

  function dropIndex(list, y) {
    var entries = Array.prototype.filter.call(list.querySelectorAll(":scope > li.entry"), function (li) {
      return li !== dragged;
    });
    for (var i = 0; i < entries.length; i++) {
      var box = entries[i].getBoundingClientRect();
      if (y < box.top + box.height / 2) { return i; }
    }
    return null; // after the last one
  }

  function initDrag(root) {
    root.querySelectorAll("li.entry[draggable]").forEach(function (li) {
      li.addEventListener("dragstart", function (event) {
        dragged = li;
        li.classList.add("dragging");
        event.dataTransfer.effectAllowed = "move";
        event.dataTransfer.setData("text/plain", li.getAttribute("data-entry-id"));
      });
      li.addEventListener("dragend", function () {
        li.classList.remove("dragging");
        dragged = null;
      });
    });
    root.querySelectorAll("ol.entries").forEach(function (list) {
      list.addEventListener("dragover", function (event) {
        if (!dragged || !list.getAttribute("data-section")) { return; }
        event.preventDefault();
        list.classList.add("drop-target");
      });
      list.addEventListener("dragleave", function () { list.classList.remove("drop-target"); });
      list.addEventListener("drop", function (event) {
        list.classList.remove("drop-target");
        var section = list.getAttribute("data-section");
        if (!dragged || !section) { return; }
        event.preventDefault();
        var index = dropIndex(list, event.clientY);
        var data = new FormData();
        data.append("csrf", csrfToken());
        data.append("section", section);
        data.append("index", index === null ? "" : String(index));
        send("/entry/" + dragged.getAttribute("data-entry-id") + "/move", data);
      });
    });
  }

  // --- live progress of add-links jobs ----------------------------------------------------------

  function watchJob(box) {
    var id = box.getAttribute("data-job");
    var timer = setInterval(function () {
      fetch("/jobs/" + encodeURIComponent(id) + ".json", { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (job) {
          if (!job) { clearInterval(timer); return; }
          var state = box.querySelector(".job-status");
          if (state) { state.textContent = job.state + (job.state === "running" && job.stage ? " (" + job.stage + ")" : ""); }
          job.items.forEach(function (item) {
            var row = box.querySelector('[data-item="' + item.id + '"]');
            if (!row) { return; }
            row.className = "job-item state-" + item.state;
            row.querySelector(".job-item-state").textContent = item.state;
          });
          if (job.state === "done" || job.state === "failed") {
            clearInterval(timer);
            refresh();
          }
        })
        .catch(function () { /* the next tick tries again */ });
    }, 700);
  }

  function init(root) {
    root.querySelectorAll("[data-inplace]").forEach(function (el) {
      el.classList.add("inplace");
      el.addEventListener("click", function () { startEdit(el); });
    });
    root.querySelectorAll("[data-copy-target]").forEach(function (button) {
      button.hidden = false;
      button.addEventListener("click", function () {
        var source = document.getElementById(button.getAttribute("data-copy-target"));
        if (!source) { return; }
        var text = source.textContent;
        var done = function () { setStatus("Copied to the clipboard", "ok"); };
        if (navigator.clipboard && window.isSecureContext) {
          navigator.clipboard.writeText(text).then(done, function () { selectAndCopy(source); done(); });
        } else {
          selectAndCopy(source);
          done();
        }
      });
    });
    root.querySelectorAll('.job[data-state="queued"], .job[data-state="running"]').forEach(watchJob);
    initDrag(root);
  }

  function selectAndCopy(node) {
    var range = document.createRange();
    range.selectNodeContents(node);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    try { document.execCommand("copy"); } catch (e) { /* the text stays selected for Ctrl+C */ }
  }

  init(document);
  window.tidings = { refresh: refresh, send: send };
})();
