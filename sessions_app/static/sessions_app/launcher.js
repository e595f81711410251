// Launcher: show the options of the environment chosen in the dropdown; remember "Open when
// ready" for the session page.
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

  // "Open when ready": the same choice as on the session page, remembered in this browser.
  var openWhenReady = document.getElementById("open-when-ready");
  var OPEN_WHEN_READY = "jlp.openWhenReady";
  if (openWhenReady) {
    try {
      openWhenReady.checked = window.localStorage.getItem(OPEN_WHEN_READY) === "1";
    } catch (e) {
      // Storage refused (private mode): the box starts unticked.
    }
    openWhenReady.addEventListener("change", function () {
      try {
        window.localStorage.setItem(OPEN_WHEN_READY, openWhenReady.checked ? "1" : "0");
      } catch (e) {
        // Not remembered.
      }
    });
  }

  // One click is enough: a second submit would only be answered with the same session.
  var form = document.getElementById("launch-form");
  var button = document.getElementById("launch-button");
  form.addEventListener("submit", function () {
    button.disabled = true;
    button.textContent = "Launching…";
    try {
      // The session page opens JupyterLab at once if it is already running when it loads.
      window.sessionStorage.setItem("jlp.launched", openWhenReady && openWhenReady.checked ? "1" : "0");
    } catch (e) {
      // Storage refused: the session page still opens it when it sees it become ready.
    }
  });
  // Coming back with the browser's Back button restores the page as it was left.
  window.addEventListener("pageshow", function () {
    button.disabled = false;
    button.textContent = "Launch";
  });
})();
