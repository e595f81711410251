// Launcher: show the options of the environment chosen in the dropdown.
(function () {
  "use strict";

  var select = document.getElementById("environment");
  if (!select) {
    return;
  }

  function showChosen() {
    var slug = select.value;
    document.querySelectorAll("fieldset.env-options").forEach(function (fieldset) {
      var chosen = fieldset.dataset.environment === slug;
      fieldset.hidden = !chosen;
      // A disabled fieldset is neither validated nor submitted, so a hidden environment's
      // inputs can neither block the launch nor be sent with it.
      fieldset.disabled = !chosen;
    });
    document.querySelectorAll("table.environments tr[data-environment]").forEach(function (row) {
      row.classList.toggle("selected", row.dataset.environment === slug);
    });
  }

  select.addEventListener("change", showChosen);
  showChosen();

  // One click is enough: a second submit would only be answered with the same session.
  var form = document.getElementById("launch-form");
  var button = document.getElementById("launch-button");
  form.addEventListener("submit", function () {
    button.disabled = true;
    button.textContent = "Launching…";
  });
  // Coming back with the browser's Back button restores the page as it was left.
  window.addEventListener("pageshow", function () {
    button.disabled = false;
    button.textContent = "Launch";
  });
})();
