// Session page: follow the session's state and count the time left down.
//
// The server renders every state; this script only updates the live numbers (queue position,
// progress message, time left) and reloads the page when the state changes, so the markup for
// each state lives in one place, the template.
(function () {
  "use strict";

  var root = document.getElementById("session");
  if (!root || root.dataset.active !== "true") {
    return;
  }

  var statusUrl = root.dataset.statusUrl;
  var renderedId = root.dataset.sessionId;
  var renderedState = root.dataset.state;
  var warningSeconds = Number(root.dataset.warningSeconds);
  // Polling is frequent while the state is about to change, and slow while the session runs:
  // the countdown runs locally and each poll only corrects it (and notices an early end).
  var pollMs = renderedState === "running" ? 5000 : 1000;

  var countdown = document.getElementById("countdown");
  var warning = document.getElementById("time-warning");
  var message = document.getElementById("session-message");
  var queuePosition = document.getElementById("queue-position-number");
  var queueWait = document.getElementById("queue-wait-minutes");

  var deadline = null; // performance.now() at which no time is left
  var lastPoll = 0;
  var polling = false;

  function setRemaining(seconds) {
    deadline = seconds === null || seconds === "" ? null : performance.now() + Number(seconds) * 1000;
  }

  function pad(n) {
    return String(n).padStart(2, "0");
  }

  function format(seconds) {
    var hours = Math.floor(seconds / 3600);
    var minutes = Math.floor((seconds % 3600) / 60);
    return pad(hours) + ":" + pad(minutes) + ":" + pad(seconds % 60);
  }

  function tick() {
    if (deadline !== null && countdown) {
      var left = Math.max(0, Math.ceil((deadline - performance.now()) / 1000));
      var text = format(left);
      if (countdown.textContent !== text) {
        countdown.textContent = text;
      }
      if (warning) {
        warning.hidden = left > warningSeconds;
      }
      if (left === 0) {
        // The server stops the session at the deadline: look for it now.
        poll();
        return;
      }
    }
    if (performance.now() - lastPoll >= pollMs) {
      poll();
    }
  }

  function update(status) {
    setRemaining(status.remaining_seconds);
    if (message && status.message) {
      message.textContent = status.message;
    }
    if (queuePosition && status.queue_position !== null) {
      queuePosition.textContent = String(status.queue_position);
    }
    if (queueWait) {
      var minutes = status.queue_wait_minutes;
      queueWait.textContent =
        minutes === null ? "not known yet" : "about " + minutes + (minutes === 1 ? " minute" : " minutes");
    }
  }

  function poll() {
    if (polling || performance.now() - lastPoll < 1000) {
      return;
    }
    polling = true;
    lastPoll = performance.now();
    fetch(statusUrl, {
      headers: { Accept: "application/json" },
      credentials: "same-origin",
      cache: "no-store",
    })
      .then(function (response) {
        // Logged out (redirected to the login page) or the session is gone: the server
        // renders what to show instead.
        if (response.redirected || response.status === 404) {
          window.location.reload();
          return null;
        }
        return response.ok ? response.json() : null;
      })
      .then(function (status) {
        if (!status) {
          return;
        }
        if (status.id !== renderedId || status.state !== renderedState) {
          window.location.reload();
          return;
        }
        update(status);
      })
      .catch(function () {
        // A network hiccup: the next poll tries again.
      })
      .finally(function () {
        polling = false;
      });
  }

  setRemaining(root.dataset.remaining);
  window.setInterval(tick, 250);
  tick();
})();
