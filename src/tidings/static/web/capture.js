// The window the capture bookmarklet opens when the page it runs on may not post forms (a CSP
// form-action): that page sends itself here by postMessage, and this window, on our origin, posts
// the same form to /capture. The key inside is what authenticates it, so any page may talk to us.
(function () {
  'use strict';
  var FIELDS = ['url', 'html', 'selection', 'key'];
  var status = document.getElementById('capture-status');

  window.addEventListener('message', function (event) {
    var data = event.data;
    if (event.source !== window.opener || !data || typeof data !== 'object' || typeof data.html !== 'string') {
      return;
    }
    var form = document.createElement('form');
    form.method = 'post';
    form.action = '/capture';
    form.enctype = 'multipart/form-data';
    form.acceptCharset = 'utf-8';
    FIELDS.forEach(function (name) {
      var input = document.createElement('input');
      input.type = 'hidden';
      input.name = name;
      input.value = String(data[name] || '');
      form.appendChild(input);
    });
    status.textContent = 'Saving ' + String(data.url || 'the page') + '…';
    document.body.appendChild(form);
    form.submit();
  });

  if (window.opener) {
    window.opener.postMessage('tidings-capture-ready', '*');
  } else {
    status.textContent = 'There is no page to receive: click the bookmarklet on the page you want to save.';
  }
})();
