// Triage by keyboard in the week view's list mode. Every key posts the SAME form a button posts
// (/entry/<id>/keep, /entry/<id>/move): the line changes at once and the posts go one after
// another. The list is not re-fetched after each one: scores move as verdicts come in, and a list
// that re-sorted under the cursor would make j skip lines. A failed post re-fetches the page, so
// what shows is what was saved; a reload shows new scores. Without this script the buttons work.
(function () {
  "use strict";

  var cursorId = null;      // entry id of the current line
  var anchorId = null;      // where a shift selection started
  var selected = {};        // entry id -> true
  var queue = Promise.resolve();
  var pending = 0;

  function list() { return document.getElementById("triage-list"); }
  function rows() {
    var root = list();
    return root ? Array.prototype.slice.call(root.querySelectorAll("li.row")) : [];
  }
  function rowOf(id) { return id === null ? null : document.getElementById("row-" + id); }
  function csrf() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  function setPending(n) {
    pending = n;
    document.body.setAttribute("data-pending", String(n));
    var status = document.getElementById("status");
    if (status) {
      status.textContent = n ? "Saving " + n + "…" : "Saved";
      status.className = "save-status " + (n ? "busy" : "ok");
    }
  }

  function paint() {
    if (list()) { list().classList.add("keyboard"); }
    rows().forEach(function (li) {
      var id = li.getAttribute("data-entry-id");
      li.classList.toggle("cursor", id === cursorId);
      li.classList.toggle("selected", !!selected[id]);
    });
    var current = rowOf(cursorId);
    if (current && current.scrollIntoView) { current.scrollIntoView({ block: "nearest" }); }
  }

  function targets() {
    var ids = Object.keys(selected);
    if (!ids.length && cursorId !== null) { ids = [cursorId]; }
    return ids;
  }

  function move(step, extend) {
    var all = rows();
    if (!all.length) { return; }
    var at = all.indexOf(rowOf(cursorId));
    var next = at < 0 ? 0 : Math.min(all.length - 1, Math.max(0, at + step));
    var id = all[next].getAttribute("data-entry-id");
    if (extend) {
      if (anchorId === null) { anchorId = cursorId === null ? id : cursorId; }
      selected = {};
      var from = all.indexOf(rowOf(anchorId)), to = next;
      for (var i = Math.min(from, to); i <= Math.max(from, to); i++) {
        selected[all[i].getAttribute("data-entry-id")] = true;
      }
    } else {
      anchorId = null;
      selected = {};
    }
    cursorId = id;
    paint();
  }

  // One form post, queued after the ones before it. It carries no version: the redirect is not
  // followed, so the line never learns its new one, and a second key on the same line would be
  // refused as stale. A key is the curator's verdict of now, so the last one wins.
  function post(url, fields) {
    var data = new FormData();
    data.append("csrf", csrf());
    data.append("view", "list");
    Object.keys(fields).forEach(function (k) { data.append(k, fields[k]); });
    setPending(pending + 1);
    queue = queue.then(function () {
      // The answer is a redirect back to the list: not followed, the line already shows the change.
      return fetch(url, { method: "POST", body: data, credentials: "same-origin", redirect: "manual",
                          headers: { "X-Requested-With": "fetch" } })
        .then(function (r) { if (!r.ok && r.type !== "opaqueredirect") { throw new Error(String(r.status)); } })
        .then(function () { setPending(pending - 1); }, function () {
          setPending(pending - 1);
          var status = document.getElementById("status");
          if (status) { status.textContent = "Not saved: the page shows what was"; status.className = "save-status error"; }
          if (window.tidings) { return window.tidings.refresh(); }
        });
    });
  }

  // After a key's post the line's forms hold a version the server has moved past: drop it, so a
  // click on the line's own buttons afterwards is not refused as stale.
  function forgetVersion(li) {
    if (li) { li.querySelectorAll('input[name="version"]').forEach(function (el) { el.remove(); }); }
  }

  function keep(value) {
    targets().forEach(function (id) {
      var li = rowOf(id);
      forgetVersion(li);
      var counter = document.getElementById("kept-count");
      if (li && counter && li.getAttribute("data-kept") !== (value ? "1" : "0")) {
        counter.textContent = String(parseInt(counter.textContent, 10) + (value ? 1 : -1));
      }
      if (li) {
        li.classList.toggle("dropped", !value);
        li.setAttribute("data-kept", value ? "1" : "0");
        // The line's own button toggles: it now offers the other verdict, as after a reload.
        var form = li.querySelector(".row-keep");
        if (form) {
          form.elements.namedItem("kept").value = value ? "0" : "1";
          var button = form.querySelector("button");
          button.className = value ? "drop" : "keep";
          button.textContent = value ? "✕" : "✓";
        }
      }
      post("/entry/" + id + "/keep", { kept: value ? "1" : "0" });
    });
  }

  function moveTo(number) {
    targets().forEach(function (id) {
      var li = rowOf(id);
      var field = li ? li.querySelector('.row-move input[name="section"]') : null;
      var names = document.querySelectorAll("#section-names option");
      if (!field || number > names.length) { return; }
      var section = names[number - 1].value;
      if (section === li.getAttribute("data-section")) { return; }
      forgetVersion(li);
      li.setAttribute("data-section", section);
      field.value = section;
      var chip = li.querySelector(".section-chip");
      if (chip) { chip.textContent = number + " " + section; }
      post("/entry/" + id + "/move", { section: section });
    });
  }

  // s: with several lines selected, one story of theirs; else the line out of its story. The
  // spread of other lines changes too, so the list is fetched again once the post is in.
  function story() {
    var ids = targets();
    if (!ids.length) { return; }
    var data = new FormData();
    data.append("csrf", csrf());
    var url = "/entry/" + ids[0] + "/split";
    if (ids.length > 1) {
      url = "/week/merge";
      ids.forEach(function (id) { data.append("entry", id); });
    }
    setPending(pending + 1);
    queue = queue.then(function () {
      return fetch(url, { method: "POST", body: data, credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
        .then(function (r) { return r.text().then(function (html) { return [r.ok, html]; }); })
        .then(function (answer) {
          setPending(pending - 1);
          // The answer is the list again (after the redirect), or with the refusal beside the line.
          var doc = new DOMParser().parseFromString(answer[1], "text/html");
          var fresh = doc.getElementById("content"), main = document.getElementById("content");
          if (fresh && main) { main.replaceWith(document.importNode(fresh, true)); }
          selected = {};
          anchorId = null;
          paint();
          if (!answer[0]) {
            var status = document.getElementById("status");
            if (status) { status.textContent = "Not changed: see the message on the line"; status.className = "save-status error"; }
          }
        }, function () { setPending(pending - 1); });
    });
  }

  function toggleHelp() {
    var help = document.getElementById("keys");
    if (help) { help.hidden = !help.hidden; }
  }

  document.addEventListener("keydown", function (event) {
    if (!list() || event.ctrlKey || event.metaKey || event.altKey) { return; }
    var target = event.target;
    if (target instanceof HTMLInputElement || target instanceof HTMLTextAreaElement ||
        target instanceof HTMLSelectElement || (target && target.isContentEditable)) {
      if (event.key === "Escape" && target.blur) { target.blur(); }
      return;
    }
    var key = event.key;
    var handled = true;
    if (key === "j" || key === "J" || key === "ArrowDown") { move(1, event.shiftKey); }
    else if (key === "k" || key === "K" || key === "ArrowUp") { move(-1, event.shiftKey); }
    else if (key === "x") { keep(false); }
    else if (key === " ") { keep(true); }
    else if (/^[1-9]$/.test(key)) { moveTo(parseInt(key, 10)); }
    else if (key === "s") { story(); }
    else if (key === "e") {
      var link = rowOf(cursorId) && rowOf(cursorId).querySelector(".edit-link");
      if (link) { window.location.href = link.href; }
    }
    else if (key === "/") { var box = document.getElementById("list-search"); if (box) { box.focus(); } }
    else if (key === "?") { toggleHelp(); }
    else if (key === "Escape") { selected = {}; anchorId = null; paint(); }
    else { handled = false; }
    if (handled) { event.preventDefault(); }
  });

  document.addEventListener("click", function (event) {
    var link = event.target instanceof Element ? event.target.closest(".help-link") : null;
    if (link) { event.preventDefault(); toggleHelp(); return; }
    var li = event.target instanceof Element ? event.target.closest("#triage-list li.row") : null;
    if (li && !(event.target instanceof HTMLAnchorElement)) { cursorId = li.getAttribute("data-entry-id"); paint(); }
  });

  // app.js swaps in the page the server answers with: keep the cursor and selection on it.
  new MutationObserver(function () { if (list()) { paint(); } }).observe(document.body, { childList: true });

  function start() {
    var hash = window.location.hash.match(/^#row-(\d+)$/);
    var first = rows()[0];
    cursorId = hash ? hash[1] : (first ? first.getAttribute("data-entry-id") : null);
    setPending(0);
    var status = document.getElementById("status");
    if (status) { status.textContent = ""; }
    paint();
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); } else { start(); }
})();
