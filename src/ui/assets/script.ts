/**
 * The pages' only script, served as /ui/assets/ui.js. Everything works without it; it adds copy buttons,
 * a confirmation before evicting, and filtering the repository list as one types. No framework: a few
 * event listeners need none (README, development notes).
 */
export const SCRIPT = `(function () {
  'use strict';
  function copied(button) {
    var label = button.textContent;
    button.textContent = 'Copied';
    button.setAttribute('data-copied', 'true');
    setTimeout(function () { button.textContent = label; }, 1500);
  }
  function copyByCommand(text, button) {
    var area = document.createElement('textarea');
    area.value = text;
    area.setAttribute('readonly', '');
    area.className = 'offscreen';
    document.body.appendChild(area);
    area.select();
    try { if (document.execCommand('copy')) copied(button); } finally { area.remove(); }
  }
  document.querySelectorAll('button[data-copy]').forEach(function (button) {
    button.hidden = false;
    button.addEventListener('click', function () {
      var text = button.getAttribute('data-copy');
      // The Clipboard API needs a secure context (https, or 127.0.0.1); DSM's window on plain http has none.
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(function () { copied(button); }, function () { copyByCommand(text, button); });
      } else {
        copyByCommand(text, button);
      }
    });
  });
  document.querySelectorAll('form[data-confirm]').forEach(function (form) {
    form.addEventListener('submit', function (event) {
      if (!window.confirm(form.getAttribute('data-confirm'))) event.preventDefault();
    });
  });
  document.querySelectorAll('input[data-filter]').forEach(function (input) {
    var table = document.querySelector(input.getAttribute('data-filter'));
    if (!table || !table.tBodies[0]) return;
    var rows = Array.prototype.slice.call(table.tBodies[0].rows);
    var counter = document.getElementById('repository-count');
    input.addEventListener('input', function () {
      var needle = input.value.trim().toLowerCase();
      var shown = 0;
      rows.forEach(function (row) {
        var match = row.getAttribute('data-name').indexOf(needle) !== -1;
        row.hidden = !match;
        if (match) shown++;
      });
      if (counter) counter.textContent = shown + (shown === 1 ? ' repository' : ' repositories');
    });
  });
})();
`;
