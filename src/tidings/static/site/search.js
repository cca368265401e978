// In-browser search over the prebuilt index in search-index.js (window.TIDINGS_SEARCH).
// The tokenizer mirrors tidings.htmltext.tokens: NFKC, lower case, CJK runs as overlapping
// bigrams (a lone CJK character as itself), runs of Latin letters and digits as words.
(function () {
  "use strict";
  var CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff";
  var WORD = "a-z0-9\u00c0-\u024f";
  var TOKEN_RE = new RegExp("[" + CJK + "]+|[" + WORD + "]+", "g");
  var CJK_RE = new RegExp("^[" + CJK + "]");

  function tokens(text) {
    var normal = (text || "").normalize("NFKC").toLowerCase();
    var runs = normal.match(TOKEN_RE) || [];
    var out = [];
    runs.forEach(function (run) {
      if (CJK_RE.test(run)) {
        if (run.length === 1) { out.push(run); return; }
        for (var i = 0; i + 1 < run.length; i++) { out.push(run.slice(i, i + 2)); }
      } else {
        out.push(run);
      }
    });
    return out;
  }

  var data = window.TIDINGS_SEARCH || { docs: [], index: {} };
  var keys = Object.keys(data.index);

  // A query token matches index keys equal to it or, for a word typed in part or a single CJK
  // character, keys that start with it.
  function postings(token) {
    var exact = data.index[token];
    var found = {};
    if (exact) { exact.forEach(function (d) { found[d] = true; }); }
    var prefix = !CJK_RE.test(token) || token.length === 1;
    if (prefix) {
      keys.forEach(function (key) {
        if (key !== token && key.lastIndexOf(token, 0) === 0) {
          data.index[key].forEach(function (d) { found[d] = true; });
        }
      });
    }
    return found;
  }

  function search(query) {
    var wanted = Array.from(new Set(tokens(query)));
    if (!wanted.length) { return []; }
    var hits = null;
    wanted.forEach(function (token) {
      var found = postings(token);
      if (hits === null) { hits = found; return; }
      Object.keys(hits).forEach(function (d) { if (!found[d]) { delete hits[d]; } });
    });
    var needle = query.normalize("NFKC").toLowerCase().trim();
    return Object.keys(hits || {}).map(Number).map(function (d) {
      var doc = data.docs[d];
      var inTitle = doc[0].normalize("NFKC").toLowerCase().indexOf(needle) >= 0 ? 1 : 0;
      return { doc: doc, score: inTitle };
    }).sort(function (a, b) {
      return b.score - a.score || (a.doc[2] < b.doc[2] ? 1 : a.doc[2] > b.doc[2] ? -1 : 0);
    }).slice(0, 100);
  }

  function render(results, query) {
    var list = document.getElementById("search-results");
    var status = document.getElementById("search-status");
    list.textContent = "";
    if (!query.trim()) { status.textContent = "Type a word: titles and summaries are searched."; return; }
    status.textContent = results.length + (results.length === 1 ? " result" : " results") + " for “" + query + "”";
    results.forEach(function (hit) {
      var doc = hit.doc;
      var li = document.createElement("li");
      li.className = "item search-hit";
      var a = document.createElement("a");
      a.className = "item-title";
      a.href = doc[1];
      a.textContent = doc[0];
      li.appendChild(a);
      var meta = document.createElement("p");
      meta.className = "meta";
      meta.textContent = doc[2] + (doc[3] ? " · " + doc[3] : "");
      if (doc[4] && /^https?:\/\//i.test(doc[4])) {
        var ext = document.createElement("a");
        ext.href = doc[4];
        ext.rel = "noopener noreferrer nofollow";
        ext.textContent = " ↗ original";
        meta.appendChild(ext);
      }
      li.appendChild(meta);
      list.appendChild(li);
    });
  }

  var input = document.getElementById("search-input");
  if (!input) { return; }
  var params = new URLSearchParams(window.location.search);
  input.value = params.get("q") || "";
  render(search(input.value), input.value);
  input.addEventListener("input", function () { render(search(input.value), input.value); });
  document.getElementById("search-form").addEventListener("submit", function (event) {
    event.preventDefault();
    render(search(input.value), input.value);
  });
  window.tidingsSearch = search;
})();
